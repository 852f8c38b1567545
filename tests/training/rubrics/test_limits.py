"""Rubric specs are bounded: template work, criteria count, text sizes, JSON depth (issue 15 item 3)."""

from __future__ import annotations

import time

import pytest

from training.rubrics.spec import (
    MAX_CRITERIA,
    MAX_QUESTION_CHARS,
    MAX_TITLE_CHARS,
    SpecError,
    validate_spec,
)


def _judge(question: str, **extra) -> dict:
    return {"key": "q", "title": "Q", "kind": "judge", "question": question,
            "choices": [{"label": "no"}, {"label": "yes"}], **extra}


def _errors(spec: dict) -> list[dict[str, str]]:
    with pytest.raises(SpecError) as caught:
        validate_spec(spec)
    return caught.value.errors


@pytest.mark.parametrize("question", [
    "{% for i in range(100000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
    "{% for i in range(9999) %}{% for j in range(9999) %}{% for k in range(9999) %}{% endfor %}{% endfor %}"
    "{% endfor %}",
    "{{ ('x' * 1000000000)|length }}",
])
def test_expensive_judge_question_is_refused_at_the_field_quickly(question: str) -> None:
    started = time.monotonic()
    errors = _errors({"criteria": [_judge(question)]})
    assert time.monotonic() - started < 2
    assert errors[0]["path"] == "criteria.0.question"
    assert "exceeds a limit" in errors[0]["message"]


def test_too_many_criteria_are_refused_before_validating_them() -> None:
    criteria = [{"key": f"k{i}", "title": "t", "kind": "format", "check": "boxed"} for i in range(10_000)]
    started = time.monotonic()
    errors = _errors({"criteria": criteria})
    assert time.monotonic() - started < 0.5
    assert errors == [{"path": "criteria", "message": f"too many items: at most {MAX_CRITERIA}, got 10,000"}]
    validate_spec({"criteria": criteria[:MAX_CRITERIA]})


def test_long_texts_are_refused_with_their_path() -> None:
    errors = _errors({"criteria": [_judge("Is it right?", title="t" * (MAX_TITLE_CHARS + 1))]})
    assert errors[0]["path"] == "criteria.0.title"
    assert str(MAX_TITLE_CHARS) in errors[0]["message"]
    errors = _errors({"criteria": [_judge("x" * (MAX_QUESTION_CHARS + 1))]})
    assert errors[0]["path"] == "criteria.0.question"
    errors = _errors({"criteria": [_judge("ok?", choices=[{"label": f"c{i}"} for i in range(500)])]})
    assert errors[0]["path"] == "criteria.0.choices"


def test_deep_json_schema_is_refused() -> None:
    schema: dict = {"type": "object"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"a": schema}}
    errors = _errors({"criteria": [{"key": "j", "title": "J", "kind": "json", "schema": schema}]})
    assert errors[0]["path"] == "criteria.0.schema"
    assert "deeper" in errors[0]["message"]
