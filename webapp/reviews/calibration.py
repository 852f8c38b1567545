"""Is a rubric version's LM judge calibrated against humans well enough to train on?

The training launcher asks this before a GRPO run: a judge that disagrees with humans is a reward to be gamed.
Per judge criterion, the judge's score and the humans' value on the same rollout × rubric version × criterion are
paired in SQL (one grouped query for all criteria), mapped onto the criterion's ordinal scale and compared with a
quadratic-weighted kappa from `agreement.py`. Programmatic criteria are checks, not opinions: they need no
calibration, and a rubric made only of them is always ok.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db.models import Avg, FloatField, OuterRef, Subquery

from training.rubrics.spec import JudgeCriterion, validate_spec
from webapp.judging.models import CriterionScore
from webapp.reviews import agreement
from webapp.reviews.models import HumanLabel
from webapp.rubrics.models import RubricVersion

# Scores that are not an LM judge's opinion: programmatic checks and rewards recorded by training runs.
NON_JUDGE_FINGERPRINTS = ("programmatic", "training-reward")


@dataclass(frozen=True)
class CriterionCalibration:
    key: str
    title: str
    n: int
    kappa: float | None
    ok: bool
    reason: str  # why it is not ok, in words a user can act on; empty when ok


@dataclass(frozen=True)
class CalibrationStatus:
    ok: bool
    needs_calibration: bool  # False for programmatic-only rubrics
    threshold: float
    min_n: int
    criteria: list[CriterionCalibration]

    @property
    def summary(self) -> str:
        if not self.needs_calibration:
            return "Programmatic criteria only: no judge to calibrate."
        if self.ok:
            return f"Every judge criterion agrees with humans (kappa ≥ {self.threshold:g}, n ≥ {self.min_n})."
        weak = [c for c in self.criteria if not c.ok]
        return "Judge not calibrated: " + "; ".join(f"{c.key}: {c.reason}" for c in weak) + "."


def _scale_points(criterion: JudgeCriterion) -> int:
    """Number of ordinal points the criterion's 0..1 scores sit on."""
    if criterion.choices is not None:
        return len(criterion.choices)
    assert criterion.scale is not None
    span = criterion.scale.max - criterion.scale.min
    # Integer scales (1–5, 0–10) are ordinal; a continuous scale is binned into ten steps.
    return int(span) + 1 if span == int(span) and span <= 100 else 11


def calibration_status(
    rubric_version: RubricVersion, *, threshold: float | None = None, min_n: int | None = None
) -> CalibrationStatus:
    if threshold is None:
        threshold = settings.RUBRICON_CALIBRATION_MIN_KAPPA
    if min_n is None:
        min_n = settings.RUBRICON_CALIBRATION_MIN_N
    spec = validate_spec(rubric_version.spec)
    judge_criteria = spec.judge_criteria
    if not judge_criteria:
        return CalibrationStatus(ok=True, needs_calibration=False, threshold=threshold, min_n=min_n, criteria=[])

    # Several judges or annotators may have scored an item: their mean is the item's value.
    human = (
        HumanLabel.objects.filter(
            rollout_id=OuterRef("rollout_id"), rubric_version=rubric_version, criterion_key=OuterRef("criterion_key"),
            value__isnull=False,
        )
        .values("rollout_id")
        .annotate(mean=Avg("value"))
        .values("mean")
    )
    pairs = (
        CriterionScore.objects.filter(
            rubric_version=rubric_version, criterion_key__in=[c.key for c in judge_criteria], score__isnull=False
        )
        .exclude(judge_fingerprint__in=NON_JUDGE_FINGERPRINTS)
        .values("rollout_id", "criterion_key")
        .annotate(judge=Avg("score"), human=Subquery(human, output_field=FloatField()))
        .filter(human__isnull=False)
        .values_list("criterion_key", "judge", "human")
    )
    by_key: dict[str, tuple[list[float], list[float]]] = {c.key: ([], []) for c in judge_criteria}
    for key, judge_value, human_value in pairs:
        by_key[key][0].append(judge_value)
        by_key[key][1].append(human_value)

    results = []
    for criterion in judge_criteria:
        judge_values, human_values = by_key[criterion.key]
        steps = _scale_points(criterion) - 1
        # 0..1 scores back onto the ordinal scale, so kappa weights a one-step miss as one step.
        stat = agreement.cohen_kappa(
            [round(v * steps) for v in judge_values],
            [round(v * steps) for v in human_values],
            weights="quadratic",
            labels=list(range(steps + 1)),
        )
        if stat.n < min_n:
            reason = f"{stat.n} paired item(s), need {min_n}: label more rollouts in a review queue"
        elif stat.value is None:
            reason = stat.reason or "agreement is undefined"
        elif stat.value < threshold:
            reason = f"kappa {stat.value:.2f} below {threshold:g}: revise the judge question or choices"
        else:
            reason = ""
        results.append(
            CriterionCalibration(
                key=criterion.key, title=criterion.title or criterion.key, n=stat.n, kappa=stat.value,
                ok=not reason, reason=reason,
            )
        )
    return CalibrationStatus(
        ok=all(c.ok for c in results), needs_calibration=True, threshold=threshold, min_n=min_n, criteria=results
    )
