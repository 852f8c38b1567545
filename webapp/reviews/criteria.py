"""The rubric's criteria as a labeling form: the same answers the judge had, on the same 0..1 scale.

Judge criteria with `choices` map choice i of k (worst first) to i / (k − 1), exactly as the judge's verdicts are
scored; judge criteria with a numeric `scale` map linearly onto 0..1; programmatic criteria (match, format, json,
length, python) are labeled pass / fail so humans can check the checker too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from webapp.core.errors import ApplicationError
from webapp.rubrics.models import RubricVersion

PASS_FAIL = [("Fail", "The check should not pass."), ("Pass", "The check should pass.")]


@dataclass(frozen=True)
class Option:
    index: int
    label: str
    description: str
    value: float


@dataclass(frozen=True)
class FormCriterion:
    key: str
    title: str
    description: str
    kind: str  # the spec kind: judge, match, format, ...
    options: list[Option] = field(default_factory=list)
    scale_min: float | None = None
    scale_max: float | None = None

    @property
    def is_scale(self) -> bool:
        return self.scale_min is not None

    @property
    def steps(self) -> int:
        """How many steps the criterion's ordinal scale has (choices − 1, or the points of an integer scale − 1);
        0 for a continuous scale. A 0..1 value v sits on step round(v · steps)."""
        if not self.is_scale:
            return len(self.options) - 1
        assert self.scale_min is not None and self.scale_max is not None
        span = self.scale_max - self.scale_min
        # Integer scales (1–5, 0–10) are ordinal: their points are the categories, and a number between two points
        # (a judge's 7.5) is taken at the nearest one. A 0–1 scale is a continuous score, not a yes/no.
        return int(span) if span == int(span) and self.scale_min == int(self.scale_min) and 2 <= span <= 100 else 0

    @property
    def stat_kind(self) -> str:
        """"ordinal" (choices, integer scales: kappa over the steps) or "score" (continuous scale: no kappa)."""
        return "ordinal" if self.steps else "score"

    @property
    def unit(self) -> str:
        """What a difference of 1 means in MAE and bias."""
        if not self.is_scale:
            return "choice steps"
        return f"points on {self.scale_min:g}–{self.scale_max:g}"

    @property
    def categories(self) -> list[float]:
        """Every category of an ordinal criterion (choice indices 0..steps), used ones or not."""
        return [float(i) for i in range(self.steps + 1)] if self.steps else []

    @property
    def ordinal_labels(self) -> list[float]:
        """Choice indices, for kappa and ordinal alpha (empty for a numeric scale)."""
        return [float(o.index) for o in self.options]

    def value_for(self, *, choice: str = "", number: float | None = None) -> tuple[str, float]:
        """(choice label, 0..1 value) for a picked choice label or a number on the criterion's scale."""
        if self.is_scale:
            if number is None:
                raise ApplicationError(f"Give a number for {self.title}.", field=self.key)
            assert self.scale_min is not None and self.scale_max is not None
            if not self.scale_min <= number <= self.scale_max:
                raise ApplicationError(
                    f"{self.title}: {number:g} is outside the scale {self.scale_min:g}..{self.scale_max:g}.",
                    field=self.key,
                )
            return f"{number:g}", (number - self.scale_min) / (self.scale_max - self.scale_min)
        for option in self.options:
            if option.label == choice:
                return option.label, option.value
        raise ApplicationError(f"{choice!r} is not a choice of {self.title}.", field=self.key)

    def index_of(self, value: float | None) -> int | None:
        """The choice index a 0..1 value stands for (nearest), or None."""
        if value is None or not self.options:
            return None
        return min(self.options, key=lambda o: abs(o.value - value)).index


def form_criteria(version: RubricVersion) -> list[FormCriterion]:
    result = []
    for c in version.criteria:
        kind = c.get("kind", "")
        base = {"key": c["key"], "title": c.get("title") or c["key"], "description": c.get("description", ""), "kind": kind}
        if kind == "judge" and c.get("scale"):
            result.append(FormCriterion(**base, scale_min=float(c["scale"]["min"]), scale_max=float(c["scale"]["max"])))
            continue
        pairs = (
            [(ch["label"], ch.get("description", "")) for ch in c["choices"]]
            if kind == "judge" and c.get("choices")
            else PASS_FAIL
        )
        k = len(pairs)
        options = [Option(i, label, desc, i / (k - 1)) for i, (label, desc) in enumerate(pairs)]
        result.append(FormCriterion(**base, options=options))
    return result


def form_criterion(version: RubricVersion, key: str) -> FormCriterion:
    for criterion in form_criteria(version):
        if criterion.key == key:
            return criterion
    raise ApplicationError(f"Rubric version {version} has no criterion {key!r}.", field="criterion_key")
