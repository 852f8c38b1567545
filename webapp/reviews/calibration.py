"""Is a rubric version's LM judge calibrated against humans well enough to train on?

The training launcher asks this before a GRPO run: a judge that disagrees with humans is a reward to be gamed.
The gate reads the agreement dashboard's own figures (`dashboard.agreement_dashboard_cached`): the same pairing,
the same human value per item, the same statistic and the same bootstrap interval, so the page and the gate cannot
disagree. Per judge criterion it reads the dashboard's headline (quadratic-weighted kappa for choices and integer
scales, interval alpha for a continuous scale) and, by default, compares the lower end of its 95 % interval with the
threshold (RUBRICON_CALIBRATION_GATE_ON_LOWER_BOUND). Programmatic criteria are checks, not opinions: they need no
calibration, and a rubric made only of them is always ok. docs/statistics.md describes the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from training.rubrics.spec import validate_spec
from webapp.judging.models import JudgeJob
from webapp.reviews import dashboard
from webapp.rubrics.models import RubricVersion

# Scores that are not an LM judge's opinion: programmatic checks and rewards recorded by training runs.
NON_JUDGE_FINGERPRINTS = ("programmatic", "training-reward")


@dataclass(frozen=True)
class CriterionCalibration:
    key: str
    title: str
    n: int
    kappa: float | None  # the headline figure (named by `statistic`)
    ok: bool
    reason: str  # why it is not ok, in words a user can act on; empty when ok
    statistic: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    judge: str = ""  # the judge whose figures these are


@dataclass(frozen=True)
class CalibrationStatus:
    ok: bool
    needs_calibration: bool  # False for programmatic-only rubrics
    threshold: float
    min_n: int
    criteria: list[CriterionCalibration]
    on_lower_bound: bool = True

    @property
    def summary(self) -> str:
        if not self.needs_calibration:
            return "Programmatic criteria only: no judge to calibrate."
        what = "the lower end of its 95 % interval" if self.on_lower_bound else "its agreement figure"
        if self.ok:
            return f"Every judge criterion agrees with humans ({what} ≥ {self.threshold:g}, n ≥ {self.min_n})."
        weak = [c for c in self.criteria if not c.ok]
        return "Judge not calibrated: " + "; ".join(f"{c.key}: {c.reason}" for c in weak) + "."


def gate_judge(version: RubricVersion, rows: list[dashboard.CriterionAgreement], key: str
               ) -> dashboard.CriterionAgreement | None:
    """The dashboard row the gate reads for a criterion: the judge of the version's most recent judge job that
    scored it, else the judge with the most paired items (scores imported without a job)."""
    candidates = [r for r in rows if r.criterion.key == key and r.fingerprint not in NON_JUDGE_FINGERPRINTS]
    if not candidates:
        return None
    by_fingerprint = {r.fingerprint: r for r in candidates}
    for fingerprint in (JudgeJob.objects.filter(rubric_version=version).exclude(judge_fingerprint="")
                        .order_by("-id").values_list("judge_fingerprint", flat=True)):
        if fingerprint in by_fingerprint:
            return by_fingerprint[fingerprint]
    return max(candidates, key=lambda r: (r.report.n, r.fingerprint))


def calibration_status(
    rubric_version: RubricVersion, *, threshold: float | None = None, min_n: int | None = None,
    on_lower_bound: bool | None = None,
) -> CalibrationStatus:
    if threshold is None:
        threshold = settings.RUBRICON_CALIBRATION_MIN_KAPPA
    if min_n is None:
        min_n = settings.RUBRICON_CALIBRATION_MIN_N
    if on_lower_bound is None:
        on_lower_bound = settings.RUBRICON_CALIBRATION_GATE_ON_LOWER_BOUND
    spec = validate_spec(rubric_version.spec)
    judge_criteria = spec.judge_criteria
    if not judge_criteria:
        return CalibrationStatus(ok=True, needs_calibration=False, threshold=threshold, min_n=min_n, criteria=[],
                                 on_lower_bound=on_lower_bound)

    rows = dashboard.agreement_dashboard_cached(rubric_version)
    results = []
    for criterion in judge_criteria:
        row = gate_judge(rubric_version, rows, criterion.key)
        stat = row.headline if row is not None else None
        n = stat.n if stat is not None else 0
        statistic = row.headline_name if row is not None else "agreement"
        if stat is None or n < min_n:
            reason = f"{n} paired item(s), need {min_n}: label more rollouts in a review queue"
        elif stat.value is None:
            reason = stat.reason or "agreement is undefined"
        elif on_lower_bound and stat.ci_low is None:
            reason = f"{statistic} {stat.value:.2f} has no interval ({stat.ci_reason}): label more rollouts"
        elif on_lower_bound and stat.ci_low is not None and stat.ci_low < threshold:
            reason = (f"{statistic} {stat.value:.2f}, 95 % interval [{stat.ci_low:.2f}, {stat.ci_high:.2f}] reaches "
                      f"below {threshold:g}: label more rollouts or revise the judge question or choices")
        elif stat.value < threshold:
            reason = f"{statistic} {stat.value:.2f} below {threshold:g}: revise the judge question or choices"
        else:
            reason = ""
        results.append(
            CriterionCalibration(
                key=criterion.key, title=criterion.title or criterion.key, n=n,
                kappa=stat.value if stat is not None else None, ok=not reason, reason=reason, statistic=statistic,
                ci_low=stat.ci_low if stat is not None else None, ci_high=stat.ci_high if stat is not None else None,
                judge=row.judge_name if row is not None else "",
            )
        )
    return CalibrationStatus(
        ok=all(c.ok for c in results), needs_calibration=True, threshold=threshold, min_n=min_n, criteria=results,
        on_lower_bound=on_lower_bound,
    )
