"""Export a rubric's judge criteria as a verifiers v1 `RubricJudge` criteria file.

    verifiers_criteria(spec) -> dict          # {"criteria": [{"name", "text", "weight", "choices"}]}
    write_verifiers_criteria(spec, path) -> Path   # JSON file for RubricJudgeConfig(path=...)

verifiers asks each criterion with its own prompt frame ({question}/{response}), so our question templates are
rendered with plain-words stand-ins ("the response") instead of the rollout blocks; choice descriptions, which the
file format has no field for, are appended to the text. A numeric scale becomes its whole-number labels
("1".."10"); non-integer scales or scales with more than 21 steps cannot be expressed and raise ValueError.
Programmatic criteria are not exported: verifiers runs its own code for those.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.rubrics.spec import JudgeCriterion, RubricSpec, compiled_template

_STAND_INS = {
    "prompt": "the task",
    "messages": [],
    "completion": "the response",
    "reference": "the reference answer",
    "info": {},
}


def _choices(criterion: JudgeCriterion) -> list[str]:
    if criterion.choices is not None:
        return [c.label for c in criterion.choices]
    assert criterion.scale is not None
    low, high = criterion.scale.min, criterion.scale.max
    if low != int(low) or high != int(high) or high - low > 20:
        raise ValueError(
            f"criterion {criterion.key!r}: scale {low:g}..{high:g} cannot be written as choices; "
            "use whole-number bounds at most 20 apart, or ordinal choices"
        )
    return [str(v) for v in range(int(low), int(high) + 1)]


def _text(criterion: JudgeCriterion) -> str:
    question = (
        compiled_template(criterion.question)
        .render(
            **_STAND_INS,
            criterion={"key": criterion.key, "title": criterion.title, "description": criterion.description},
            choices=[{"label": c.label, "description": c.description} for c in criterion.choices or []],
        )
        .strip()
    )
    parts = [f"{criterion.title}: {question}"]
    if criterion.description:
        parts.append(criterion.description)
    described = [c for c in criterion.choices or [] if c.description]
    if described:
        parts.append("Choices: " + "; ".join(f"{c.label} = {c.description}" for c in described))
    if criterion.use_reference:
        parts.append("Compare with the reference answer.")
    return " ".join(parts)


def verifiers_criteria(spec: RubricSpec) -> dict[str, Any]:
    criteria = spec.judge_criteria
    if not criteria:
        raise ValueError("this rubric has no judge criteria to export")
    if sum(c.weight for c in criteria) <= 0:
        raise ValueError("every judge criterion has weight 0; verifiers needs at least one positive weight")
    return {
        "criteria": [
            {"name": c.key, "text": _text(c), "weight": c.weight, "choices": _choices(c)} for c in criteria
        ]
    }


def write_verifiers_criteria(spec: RubricSpec, path: str | Path) -> Path:
    target = Path(path)
    target.write_text(
        json.dumps(verifiers_criteria(spec), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return target
