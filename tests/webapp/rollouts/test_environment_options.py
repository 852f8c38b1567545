"""A task's environment options reach its environment, and options the environment refuses are a clear error on
the environment_config field (never a crash when a job starts)."""

from __future__ import annotations

import pytest

from tests.factories import TaskFactory
from webapp.core.errors import ApplicationError
from webapp.rollouts.engines import environment_factory
from webapp.tasks.models import TaskKind


@pytest.mark.django_db
def test_wordle_plays_by_textarenas_rules_when_the_task_says_so():
    task = TaskFactory(kind=TaskKind.ENVIRONMENT, environment="wordle",
                       environment_config={"rules": "textarena", "max_guesses": 5})
    env = environment_factory(task)()
    assert (env.guess_format, env.invalid_move_limit, env.max_guesses) == ("brackets", 1, 5)


@pytest.mark.django_db
@pytest.mark.parametrize(("config", "message"), [
    ({"guess_format": "xml"}, "guess_format must be one of tag, brackets"),  # refused value (ValueError)
    ({"max_guesses": 12, "max_turns": 3}, r"max_turns \(3\) must be at least max_guesses \(12\)"),
    ({"colour": "blue"}, "unexpected keyword argument 'colour'"),  # unknown option (TypeError)
])
def test_refused_options_name_the_field(config, message):
    task = TaskFactory(kind=TaskKind.ENVIRONMENT, environment="wordle", environment_config=config)
    with pytest.raises(ApplicationError, match=message) as raised:
        environment_factory(task)
    assert raised.value.field == "environment_config"
