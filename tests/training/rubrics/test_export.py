"""verifiers v1 RubricJudge criteria files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.rubrics import validate_spec
from training.rubrics.export import verifiers_criteria, write_verifiers_criteria

SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "mode": "exact"},
        {
            "key": "helpful",
            "title": "Helpful",
            "kind": "judge",
            "weight": 2,
            "question": "Does {{ completion }} answer {{ prompt }}?",
            "use_reference": True,
            "choices": [
                {"label": "no", "description": "misses it"},
                {"label": "yes", "description": "answers it"},
            ],
        },
        {
            "key": "clarity",
            "title": "Clarity",
            "kind": "judge",
            "weight": 0,
            "question": "How clear is it?",
            "scale": {"min": 1, "max": 5},
        },
    ]
}


def test_export_shape() -> None:
    data = verifiers_criteria(validate_spec(SPEC))
    assert data == {
        "criteria": [
            {
                "name": "helpful",
                "weight": 2.0,
                "choices": ["no", "yes"],
                "text": "Helpful: Does the response answer the task? Choices: no = misses it; yes = answers it "
                "Compare with the reference answer.",
            },
            {
                "name": "clarity",
                "weight": 0.0,
                "choices": ["1", "2", "3", "4", "5"],
                "text": "Clarity: How clear is it?",
            },
        ]
    }


def test_unexportable_rubrics() -> None:
    with pytest.raises(ValueError, match="no judge criteria"):
        verifiers_criteria(validate_spec({"criteria": SPEC["criteria"][:1]}))
    fractional = {**SPEC["criteria"][2], "weight": 1, "scale": {"min": 0, "max": 2.5}}
    with pytest.raises(ValueError, match="cannot be written as choices"):
        verifiers_criteria(validate_spec({"criteria": [fractional]}))
    with pytest.raises(ValueError, match="weight 0"):
        verifiers_criteria(validate_spec({"criteria": [SPEC["criteria"][0], SPEC["criteria"][2]]}))


def test_verifiers_loads_the_file(tmp_path: Path) -> None:
    rubric = pytest.importorskip("verifiers.v1.judges.rubric", reason="verifiers==0.4.0 is not installed")
    path = write_verifiers_criteria(validate_spec(SPEC), tmp_path / "criteria.json")
    criteria = rubric.load_criteria(path)
    assert [(c.name, c.weight, c.choices) for c in criteria] == [
        ("helpful", 2.0, ["no", "yes"]),
        ("clarity", 0.0, ["1", "2", "3", "4", "5"]),
    ]
    assert json.loads(path.read_text())["criteria"][0]["text"].startswith("Helpful:")
    # And RubricJudge's own scoring maps our worst→best order the same way we do.
    assert rubric.normalize_choice("yes", criteria[0].choices) == 1.0
