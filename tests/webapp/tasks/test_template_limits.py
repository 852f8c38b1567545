"""A task's prompt template is checked with the bounded sandbox (issue 15 item 3)."""

from __future__ import annotations

import time

import pytest

from webapp.core.errors import ApplicationError
from webapp.tasks.services import prompt_template_check


@pytest.mark.parametrize("template", [
    "{% for i in range(9999) %}{% for j in range(9999) %}{{ prompt }}{% endfor %}{% endfor %}",
    "{{ prompt * 1000000000 }}",
])
def test_expensive_prompt_template_is_refused_at_its_field(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(ApplicationError) as caught:
        prompt_template_check(template)
    assert time.monotonic() - started < 2
    assert caught.value.field == "prompt_template"
    assert "exceeds a limit" in caught.value.message


def test_ordinary_prompt_template_passes() -> None:
    prompt_template_check("{{ prompt }}{% for k in info %} {{ k }}{% endfor %}")
