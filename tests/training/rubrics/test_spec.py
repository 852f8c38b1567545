from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from tests.training.specs import arithmetic_spec
from training.rubrics import SpecError, spec_json_schema, validate_spec
from training.rubrics.spec import JudgeCriterion, MatchCriterion

DEMO_SPEC = arithmetic_spec()


def judge(key: str = "helpful", **extra: object) -> dict[str, object]:
    return {
        "key": key,
        "title": "Helpful",
        "kind": "judge",
        "question": "Is {{ completion }} helpful?",
        "choices": [{"label": "no"}, {"label": "yes"}],
        **extra,
    }


def errors_of(data: object, **kwargs: object) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        validate_spec(data, **kwargs)  # type: ignore[arg-type]
    return {e["path"]: e["message"] for e in info.value.errors}


def test_demo_seed_spec_validates() -> None:
    spec = validate_spec(copy.deepcopy(DEMO_SPEC))
    assert [c.key for c in spec.criteria] == ["correct", "format"]
    assert isinstance(spec.criteria[0], MatchCriterion) and spec.criteria[0].mode == "numeric"
    assert spec.judge.max_criteria_per_call == 1 and spec.gates == []


def test_every_kind_validates_and_round_trips() -> None:
    data = {
        "criteria": [
            judge(scale=None, use_reference=True),
            {
                "key": "scaled",
                "title": "Scaled",
                "kind": "judge",
                "question": "Rate it",
                "scale": {"min": 1, "max": 10},
            },
            {"key": "m", "title": "M", "kind": "match", "mode": "regex", "pattern": r"^\d+$"},
            {"key": "f", "title": "F", "kind": "format", "check": "think_answer_tags"},
            {"key": "j", "title": "J", "kind": "json", "schema": {"type": "object", "required": ["a"]}},
            {
                "key": "l",
                "title": "L",
                "kind": "length",
                "unit": "tokens",
                "max": 100,
                "slack": 50,
                "weight": 0,
            },
            {
                "key": "p",
                "title": "P",
                "kind": "python",
                "function": "tests.training.rubrics.reward_fixtures.mentions_reference",
            },
        ],
        "gates": [{"criterion": "m", "below": 0.5}],
        "judge": {"max_criteria_per_call": 3, "group_relative": True},
    }
    spec = validate_spec(data, python_allowlist=["tests.training.rubrics.reward_fixtures.*"])
    assert isinstance(spec.criteria[0], JudgeCriterion)
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["criteria"][4]["schema"] == {"type": "object", "required": ["a"]}
    again = validate_spec(
        json.loads(json.dumps(dumped)), python_allowlist=["tests.training.rubrics.reward_fixtures.*"]
    )
    assert again == spec


def test_json_schema_export_describes_the_demo_spec() -> None:
    schema = spec_json_schema()
    jsonschema.validate(DEMO_SPEC, schema)
    assert "discriminator" in json.dumps(schema) or "oneOf" in json.dumps(schema)


@pytest.mark.parametrize(
    ("criterion", "path", "fragment"),
    [
        (
            {"key": "m", "title": "M", "kind": "match", "mode": "regex"},
            "criteria.0.pattern",
            "needs a 'pattern'",
        ),
        (
            {"key": "m", "title": "M", "kind": "match", "mode": "regex", "pattern": "(a"},
            "criteria.0.pattern",
            "missing )",
        ),
        (
            {"key": "m", "title": "M", "kind": "match", "mode": "regex", "pattern": r"(a)\1"},
            "criteria.0.pattern",
            "RE2",
        ),
        (
            {"key": "m", "title": "M", "kind": "match", "mode": "numeric", "value": "abc"},
            "criteria.0.value",
            "number",
        ),
        ({"key": "m", "title": "M", "kind": "match", "mode": "fuzzy"}, "criteria.0.mode", "expected"),
        (
            {"key": "m", "title": "M", "kind": "match", "tolerance": -1},
            "criteria.0.tolerance",
            "must be >= 0",
        ),
        (
            {"key": "Bad-Key", "title": "M", "kind": "format", "check": "boxed"},
            "criteria.0.key",
            "lowercase slug",
        ),
        (
            {"key": "m", "title": "M", "kind": "format", "check": "boxed", "weight": -1},
            "criteria.0.weight",
            ">= 0",
        ),
        (
            {"key": "m", "title": "M", "kind": "format", "check": "boxed", "colour": 1},
            "criteria.0.colour",
            "unknown field",
        ),
        ({"key": "m", "title": "M", "kind": "nope"}, "criteria.0", "unknown kind 'nope'"),
        ({"key": "m", "title": "M"}, "criteria.0", "missing 'kind'"),
        (
            {"key": "j", "title": "J", "kind": "json", "schema": {"type": "bogus"}},
            "criteria.0.schema",
            "invalid JSON Schema",
        ),
        (
            {"key": "j", "title": "J", "kind": "json", "schema": {"properties": {"a": {"minimum": "x"}}}},
            "criteria.0.schema",
            "properties/a/minimum",
        ),
        ({"key": "l", "title": "L", "kind": "length"}, "criteria.0", "'min', 'max'"),
        (
            {"key": "l", "title": "L", "kind": "length", "min": 10, "max": 5},
            "criteria.0.max",
            "max (5) must be >= min (10)",
        ),
        (judge(question="{{ foo }}"), "criteria.0.question", "unknown template variable(s) ['foo']"),
        (judge(question="{% if %}"), "criteria.0.question", "syntax error"),
        (judge(question="{{ completion.__class__.__mro__ }}"), "criteria.0.question", "sandbox"),
        (judge(question="{{ ''.__class__ }}"), "criteria.0.question", "sandbox"),
        (judge(question="{{ criterion.title.upper.__globals__ }}"), "criteria.0.question", "sandbox"),
        (judge(choices=[{"label": "yes"}]), "criteria.0.choices", "at least 2 choices"),
        (judge(choices=[{"label": "Yes"}, {"label": "yes"}]), "criteria.0.choices", "unique"),
        (judge(scale={"min": 1, "max": 5}), "criteria.0", "not both"),
        (judge(choices=None), "criteria.0", "either 'choices'"),
        (judge(choices=None, scale={"min": 5, "max": 5}), "criteria.0.scale", "greater than min"),
        (
            {"key": "p", "title": "P", "kind": "python", "function": "os.system"},
            "criteria.0.function",
            "allowlist",
        ),
        (
            {"key": "p", "title": "P", "kind": "python", "function": "not a path"},
            "criteria.0.function",
            "pattern",
        ),
    ],
)
def test_invalid_criteria_report_path_and_fix(criterion: dict[str, object], path: str, fragment: str) -> None:
    errors = errors_of({"criteria": [criterion]})
    assert path in errors, errors
    assert fragment in errors[path]


def test_error_path_points_at_the_right_criterion() -> None:
    ok = {"key": "a", "title": "A", "kind": "format", "check": "boxed"}
    errors = errors_of(
        {"criteria": [ok, {"key": "b", "title": "B", "kind": "match", "mode": "regex", "pattern": "(a"}]}
    )
    assert list(errors) == ["criteria.1.pattern"]


def test_rubric_level_errors() -> None:
    a = {"key": "a", "title": "A", "kind": "format", "check": "boxed", "weight": 0}
    assert "weight > 0" in errors_of({"criteria": [a, {**a, "key": "b"}]})["criteria"]
    assert "already used by criteria.0" in errors_of({"criteria": [{**a, "weight": 1}, a]})["criteria.1.key"]
    assert (
        "unknown criterion 'zz'"
        in errors_of({"criteria": [{**a, "weight": 1}], "gates": [{"criterion": "zz"}]})["gates.0.criterion"]
    )
    assert (
        "must be > 0"
        in errors_of({"criteria": [{**a, "weight": 1}], "gates": [{"criterion": "a", "below": 0}]})[
            "gates.0.below"
        ]
    )
    assert "criteria" in errors_of({"criteria": []})
    assert "" in errors_of([1, 2])
    assert "judge.max_criteria_per_call" in errors_of(
        {"criteria": [{**a, "weight": 1}], "judge": {"max_criteria_per_call": 0}}
    )


def test_python_criteria_need_the_allowlist_and_an_importable_function() -> None:
    base = {"key": "p", "title": "P", "kind": "python"}
    path = "tests.training.rubrics.reward_fixtures.mentions_reference"
    assert "allowlist" in errors_of({"criteria": [{**base, "function": path}]})["criteria.0.function"]
    validate_spec({"criteria": [{**base, "function": path}]}, python_allowlist=[path])
    validate_spec(
        {"criteria": [{**base, "function": path}]},
        python_allowlist=["tests.training.rubrics.reward_fixtures.*"],
    )
    missing = "tests.training.rubrics.reward_fixtures.nope"
    assert (
        "cannot import"
        in errors_of({"criteria": [{**base, "function": missing}]}, python_allowlist=[missing])[
            "criteria.0.function"
        ]
    )
    not_callable = "tests.training.rubrics.reward_fixtures.NOT_CALLABLE"
    assert (
        "not callable"
        in errors_of({"criteria": [{**base, "function": not_callable}]}, python_allowlist=[not_callable])[
            "criteria.0.function"
        ]
    )


def test_several_errors_are_reported_together() -> None:
    errors = errors_of(
        {
            "criteria": [
                {"key": "a", "title": "A", "kind": "match", "mode": "regex", "pattern": "("},
                judge("b", question="{{ nope }}"),
            ]
        }
    )
    assert set(errors) == {"criteria.0.pattern", "criteria.1.question"}
