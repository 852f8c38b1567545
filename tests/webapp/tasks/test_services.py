"""Task and example services on Postgres: validation at the right field, optimistic locking, atomic batches."""

from __future__ import annotations

import pytest

from tests.factories import ExampleFactory, ProjectFactory, RolloutFactory, TaskFactory
from webapp.core.errors import ApplicationError, ConflictError
from webapp.tasks import selectors, services
from webapp.tasks.models import Example, Task
from webapp.tasks.services import ExampleData

pytestmark = pytest.mark.django_db


def task_values(task: Task, **changes) -> dict:
    values = {f: getattr(task, f) for f in services.TASK_EDITABLE}
    return {**values, **changes}


def test_task_create_validates_template_kind_and_environment():
    project = ProjectFactory()
    task = services.task_create(project=project, name="  Wordle  ", kind="environment", environment="wordle",
                                environment_config={"max_turns": 6}, prompt_template="Guess: {{ info.hint }}")
    assert (task.name, task.environment, task.environment_config) == ("Wordle", "wordle", {"max_turns": 6})

    cases = [
        ({"name": "Wordle"}, "name", "already exists"),
        ({"name": " "}, "name", "needs a name"),
        ({"prompt_template": "{{ prompt }"}, "prompt_template", "Line 1: unexpected '}'"),
        ({"prompt_template": "{% if prompt %}x"}, "prompt_template", "Line 1"),
        ({"prompt_template": "{{ question }}"}, "prompt_template", "Unknown variable 'question'"),
        ({"prompt_template": "{{ prompt | shout }}"}, "prompt_template", "No filter named 'shout'"),
        ({"prompt_template": "{{ prompt.__class__ }}"}, "prompt_template", "unsafe"),
        ({"kind": "environment", "environment": ""}, "environment", "Choose an environment"),
        ({"kind": "environment", "environment": "chess"}, "environment", "wordle or tools"),
        ({"environment_config": [1]}, "environment_config", "JSON object"),
    ]
    for kwargs, field, message in cases:
        with pytest.raises(ApplicationError) as info:
            services.task_create(project=project, **{"name": "Other", **kwargs})
        assert info.value.field == field, kwargs
        assert message in info.value.message, (kwargs, info.value.message)
    assert Task.objects.filter(project=project).count() == 1


def test_single_turn_task_drops_the_environment_name():
    task = services.task_create(project=ProjectFactory(), name="T", kind="single_turn", environment="wordle")
    assert task.environment == ""


def test_task_update_bumps_row_version_and_refuses_a_stale_edit():
    task = TaskFactory(prompt_template="{{ prompt }}")
    services.task_update(task=task, row_version=1, **task_values(task, instructions="First edit"))
    assert task.row_version == 2 and task.instructions == "First edit"

    stale = Task.objects.get(pk=task.pk)
    stale.row_version = 1
    with pytest.raises(ConflictError) as info:
        services.task_update(task=stale, row_version=1, **task_values(stale, instructions="Second edit"))
    assert info.value.status == 409
    assert info.value.extra["current"]["instructions"] == "First edit"
    assert info.value.extra["current"]["row_version"] == 2
    assert Task.objects.get(pk=task.pk).instructions == "First edit"


def test_task_update_rejects_a_name_taken_by_another_task():
    task = TaskFactory(name="A")
    TaskFactory(project=task.project, name="B")
    with pytest.raises(ApplicationError) as info:
        services.task_update(task=task, row_version=1, **task_values(task, name="B"))
    assert info.value.field == "name"
    services.task_update(task=task, row_version=1, **task_values(task, name="A"))  # its own name is fine


def test_task_delete_removes_examples_but_keeps_tasks_with_rollouts():
    example = ExampleFactory()
    services.task_delete(task=example.task)
    assert not Example.objects.filter(pk=example.pk).exists()
    rollout = RolloutFactory()
    with pytest.raises(ApplicationError, match="This task has 1 rollout"):
        services.task_delete(task=rollout.task)
    assert Task.objects.filter(pk=rollout.task_id).exists()


def test_example_create_update_split_and_conflicts():
    task = TaskFactory()
    example = services.example_create(task=task, external_id=" q1 ", prompt="2+2?", answer="4", info={"a": 1})
    assert example.external_id == "q1"
    with pytest.raises(ApplicationError, match="already exists"):
        services.example_create(task=task, external_id="q1")
    with pytest.raises(ApplicationError) as info:
        services.example_create(task=task, external_id="q2", split="test")
    assert info.value.field == "split"

    services.example_update(example=example, row_version=1, prompt="3+3?", answer="6", split="eval", info={})
    assert (example.prompt, example.split, example.row_version) == ("3+3?", "eval", 2)
    with pytest.raises(ConflictError) as conflict:
        services.example_set_split(example=Example.objects.get(pk=example.pk), row_version=1, split="train")
    assert conflict.value.extra["current"]["split"] == "eval"
    services.example_set_split(example=example, row_version=2, split="train")
    assert Example.objects.get(pk=example.pk).split == "train"
    services.example_delete(example=example)
    assert not task.examples.exists()


def test_examples_add_is_all_or_nothing_and_names_the_line():
    task = TaskFactory()
    ExampleFactory(task=task, external_id="taken")
    batches = [
        ([ExampleData("a", location="Line 2"), ExampleData("a", location="Line 5")],
         "Line 5: duplicate id 'a' (also on line 2)"),
        ([ExampleData("b", location="Line 2"), ExampleData("taken", location="Line 3")],
         "Line 3: id 'taken' already exists in this task"),
        ([ExampleData("c"), ExampleData("d", split="test")], "Example 2: unknown split 'test'"),
        ([ExampleData("x" * 201, location="Row 1")], "Row 1: the id is longer than 200 characters"),
    ]
    for batch, message in batches:
        with pytest.raises(ApplicationError) as info:
            services.examples_add(task=task, examples=batch)
        assert message in info.value.message
    assert list(task.examples.values_list("external_id", flat=True)) == ["taken"]
    assert services.examples_add(task=task, examples=[ExampleData("e"), ExampleData("f", split="eval")]) == 2


def test_example_list_selector_filters_by_split(django_assert_num_queries):
    task = TaskFactory()
    ExampleFactory.create_batch(3, task=task)
    ExampleFactory(task=task, split="eval")
    with django_assert_num_queries(1):
        assert len(list(selectors.example_list(task, split="eval"))) == 1
    first = task.examples.first()
    with django_assert_num_queries(1):
        assert selectors.example_get(task, first.pk).task_id == task.pk
