"""Pure helpers over rubric spec dicts (no database): defaults, weight shares, display values and version diffs.

Criteria are matched across versions by their `key`, the same identity scores and labels use.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from training.rubrics.spec import (
    CRITERION_KINDS,
    FormatCriterion,
    JsonCriterion,
    JudgeCriterion,
    JudgeOptions,
    LengthCriterion,
    MatchCriterion,
    PythonCriterion,
    ReasoningGymCriterion,
)

KIND_MODELS: dict[str, Any] = {
    "judge": JudgeCriterion,
    "match": MatchCriterion,
    "format": FormatCriterion,
    "json": JsonCriterion,
    "length": LengthCriterion,
    "python": PythonCriterion,
    "reasoning_gym": ReasoningGymCriterion,
}
COMMON_FIELDS = ("title", "kind", "description", "weight")
DEFAULT_GATE_BELOW = 1.0


class _Absent:
    """A field of a criterion that is not in that version at all (added or removed criterion)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@functools.cache
def criterion_defaults(kind: str) -> dict[str, Any]:
    """Defaults of the optional fields of a criterion kind, keyed as in the spec document ('schema', not 'schema_')."""
    model = KIND_MODELS.get(kind)
    if model is None:
        return {}
    return {
        (info.alias or name): info.get_default(call_default_factory=True)
        for name, info in model.model_fields.items()
        if not info.is_required()
    }


@functools.cache
def criterion_fields(kind: str) -> tuple[str, ...]:
    """The document fields of a kind in display order: common fields first, then the kind's own."""
    model = KIND_MODELS.get(kind)
    own = [info.alias or name for name, info in model.model_fields.items()] if model else []
    return tuple(dict.fromkeys([*COMMON_FIELDS, *(f for f in own if f != "key")]))


def judge_options(spec: dict) -> dict[str, Any]:
    defaults = {name: info.get_default(call_default_factory=True) for name, info in JudgeOptions.model_fields.items()}
    given = spec.get("judge") if isinstance(spec.get("judge"), dict) else {}
    return {**defaults, **given}


def _number(value: Any) -> float | None:
    """A finite number, or None: NaN and infinity are not weights (NaN once made the shares divide by zero)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | str) and str(value).strip():
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return None
        return number if math.isfinite(number) else None
    return None


def format_share(share: float) -> str:
    """'33.3%' — the same rounding as static/rubrics/editor.js, which updates shares as the user types."""
    return f"{round(share * 100, 1):g}%"


def weight_shares(weights: list[Any]) -> list[str]:
    """Each criterion's normalized share of the reward: weight / sum of the weights > 0; weight 0 is a logged metric.

    A weight that is not a number >= 0 gets "—" (the editor shows its error at the field)."""
    numbers = [_number(w) for w in weights]
    total = sum(n for n in numbers if n is not None and n > 0)
    shares = []
    for n in numbers:
        if n is None or n < 0:
            shares.append("—")
        elif n == 0:
            shares.append("metric")
        else:
            shares.append(format_share(n / total))
    return shares


def display_value(value: Any) -> str:
    """A field value as one readable string for tables and diffs."""
    if value is ABSENT:
        return ""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list) and all(isinstance(c, dict) and "label" in c for c in value):
        # judge choices, worst first
        return "\n".join(
            f"{i}. {c.get('label', '')}" + (f" — {c['description']}" if c.get("description") else "")
            for i, c in enumerate(value, 1)
        )
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    na, nb = _number(a) if not isinstance(a, str) else None, _number(b) if not isinstance(b, str) else None
    if na is not None and nb is not None:
        return na == nb
    return bool(a == b)


@dataclass(frozen=True)
class FieldRow:
    """One field in two versions; `old`/`new` are ABSENT where the criterion (or gate) is not in that version."""

    field: str
    old: Any
    new: Any

    @property
    def changed(self) -> bool:
        return not _same(self.old, self.new)

    @property
    def old_display(self) -> str:
        return display_value(self.old)

    @property
    def new_display(self) -> str:
        return display_value(self.new)


@dataclass
class CriterionDiff:
    key: str
    status: Literal["added", "removed", "changed", "unchanged"]
    old_position: int | None  # 1-based
    new_position: int | None
    rows: list[FieldRow]

    @property
    def changes(self) -> list[FieldRow]:
        return [r for r in self.rows if r.changed]

    @property
    def moved(self) -> bool:
        return self.old_position is not None and self.new_position is not None and self.old_position != self.new_position

    @property
    def title(self) -> str:
        for row in self.rows:
            if row.field == "title":
                return str(row.new if row.new is not ABSENT else row.old)
        return self.key


@dataclass
class SpecDiff:
    criteria: list[CriterionDiff]
    gates: list[FieldRow] = field(default_factory=list)  # field = gated criterion key, values = `below`
    judge: list[FieldRow] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for c in self.criteria if c.status == status)

    @property
    def added(self) -> int:
        return self.count("added")

    @property
    def removed(self) -> int:
        return self.count("removed")

    @property
    def changed(self) -> int:
        return self.count("changed")

    @property
    def gate_changes(self) -> list[FieldRow]:
        return [g for g in self.gates if g.changed]

    @property
    def judge_changes(self) -> list[FieldRow]:
        return [j for j in self.judge if j.changed]

    @property
    def is_empty(self) -> bool:
        return not (
            any(c.status != "unchanged" or c.moved for c in self.criteria) or self.gate_changes or self.judge_changes
        )

    def summary(self) -> str:
        """One line for a version note: 'added length_1; changed format (weight); gate on correct'."""
        parts = []
        for c in self.criteria:
            if c.status in ("added", "removed"):
                parts.append(f"{c.status} {c.key}")
            elif c.status == "changed":
                parts.append(f"changed {c.key} ({', '.join(r.field for r in c.changes)})")
        if any(c.moved for c in self.criteria) and not any(c.status in ("added", "removed") for c in self.criteria):
            parts.append("reordered criteria")
        if self.gate_changes:
            parts.append("gates on " + ", ".join(g.field for g in self.gate_changes))
        if self.judge_changes:
            parts.append("judge options (" + ", ".join(j.field for j in self.judge_changes) + ")")
        return "; ".join(parts) if parts else "no changes"


def _criteria_by_key(spec: dict) -> dict[str, tuple[int, dict]]:
    out: dict[str, tuple[int, dict]] = {}
    for index, criterion in enumerate(spec.get("criteria") or []):
        if isinstance(criterion, dict):
            out.setdefault(str(criterion.get("key", f"#{index + 1}")), (index, criterion))
    return out


def _normalized(criterion: dict) -> dict:
    return {**criterion_defaults(str(criterion.get("kind", ""))), **criterion}


def _criterion_rows(old: dict | None, new: dict | None) -> list[FieldRow]:
    old_n = _normalized(old) if old is not None else None
    new_n = _normalized(new) if new is not None else None
    names: list[str] = []
    for c in (new, old):
        if c is not None:
            names.extend(criterion_fields(str(c.get("kind", ""))))
            names.extend(k for k in c if k != "key")  # fields unknown to the engine still show up
    rows = []
    for name in dict.fromkeys(names):
        old_value = ABSENT if old_n is None else old_n.get(name, ABSENT)
        new_value = ABSENT if new_n is None else new_n.get(name, ABSENT)
        rows.append(FieldRow(name, old_value, new_value))
    return rows


def spec_diff(old: dict, new: dict) -> SpecDiff:
    """Diff two rubric specs: criteria matched by key (added / removed / changed fields / moved), gates, judge options.

    Defaults are filled in first, so `{"weight": 1}` and a spec without a weight compare equal. Criteria come in the
    new version's order, with removed ones placed after their old predecessor."""
    old_by_key, new_by_key = _criteria_by_key(old), _criteria_by_key(new)
    diffs: list[CriterionDiff] = []
    for key, (index, criterion) in new_by_key.items():
        before = old_by_key.get(key)
        rows = _criterion_rows(before[1] if before else None, criterion)
        status: Literal["added", "changed", "unchanged"] = (
            "added" if before is None else "changed" if any(r.changed for r in rows) else "unchanged"
        )
        diffs.append(CriterionDiff(key, status, before[0] + 1 if before else None, index + 1, rows))
    old_order = list(old_by_key)
    for position, key in enumerate(old_order):
        if key in new_by_key:
            continue
        removed = CriterionDiff(key, "removed", position + 1, None, _criterion_rows(old_by_key[key][1], None))
        predecessor = next((k for k in reversed(old_order[:position]) if any(d.key == k for d in diffs)), None)
        at = 0 if predecessor is None else next(i for i, d in enumerate(diffs) if d.key == predecessor) + 1
        diffs.insert(at, removed)

    def gates(spec: dict) -> dict[str, Any]:
        return {
            str(g.get("criterion")): g.get("below", DEFAULT_GATE_BELOW)
            for g in spec.get("gates") or []
            if isinstance(g, dict)
        }

    old_gates, new_gates = gates(old), gates(new)
    gate_rows = [
        FieldRow(key, old_gates.get(key, ABSENT), new_gates.get(key, ABSENT))
        for key in dict.fromkeys([*new_gates, *old_gates])
    ]
    old_judge, new_judge = judge_options(old), judge_options(new)
    judge_rows = [
        FieldRow(name, old_judge.get(name, ABSENT), new_judge.get(name, ABSENT))
        for name in dict.fromkeys([*new_judge, *old_judge])
    ]
    return SpecDiff(diffs, gate_rows, judge_rows)


__all__ = [
    "ABSENT",
    "CRITERION_KINDS",
    "CriterionDiff",
    "FieldRow",
    "SpecDiff",
    "criterion_defaults",
    "criterion_fields",
    "display_value",
    "format_share",
    "judge_options",
    "spec_diff",
    "weight_shares",
]
