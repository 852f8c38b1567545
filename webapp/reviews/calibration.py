"""Is a rubric version's LM judge calibrated against humans well enough to train on?

The training launcher asks this before a GRPO run: a judge that disagrees with humans is a reward to be gamed.
Per judge criterion, the judge's score and the humans' value on the same rollout × rubric version × criterion are
paired in SQL by the selector the agreement dashboard uses (`selectors.label_score_cells`, judges pooled per item),
mapped onto the criterion's ordinal scale and compared with a quadratic-weighted kappa from `agreement.py`. Programmatic criteria are checks, not opinions: they need no
calibration, and a rubric made only of them is always ok.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from training.rubrics.spec import JudgeCriterion, validate_spec
from webapp.reviews import agreement
from webapp.reviews.selectors import label_score_cells
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
    pairs = label_score_cells(
        label_version_id=rubric_version.pk, pool_judges=True, exclude_fingerprints=NON_JUDGE_FINGERPRINTS,
        work_mem=None,
    )

    results = []
    for criterion in judge_criteria:
        cells = pairs.get(("", criterion.key))
        steps = _scale_points(criterion) - 1
        # 0..1 scores back onto the ordinal scale, so kappa weights a one-step miss as one step.
        stat = agreement.cohen_kappa(
            np.round(cells.judge * steps) if cells else [],
            np.round(cells.human * steps) if cells else [],
            counts=cells.counts if cells else None,
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
