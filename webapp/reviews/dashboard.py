"""Judge–human agreement per rubric version × judge × criterion, aggregated in SQL, computed by `agreement.py`.

Pairs come out of Postgres already compressed (`selectors.label_score_cells`, shared with the calibration gate): one
row per (judge, criterion, judge score, human value) with its count, so the dashboard reads a few hundred rows whether
1,000 or 1,000,000 scores stand behind them, and `agreement.py` computes every figure from those counts (cost by
distinct pairs, not by items). Figures live in the shared cache, keyed by the state of the version's labels (write
counters the database keeps, `LabelWrites`: a cached view reads no label) and judge jobs, and are warmed by the worker
when a judge job finishes (`agreement_cache_warm`).

The human value of an item is `agreement.human_value` (mean choice index in integer arithmetic, rounded to the
nearest choice; an exact split is left out and counted) for choices and integer scales, the mean label for a
continuous scale. The training launcher's calibration gate reads its figures from `agreement_dashboard_cached`, so
the page and the gate cannot disagree. docs/statistics.md defines every figure.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, Max, Min, OuterRef, Q, Sum
from django.db.models.functions import Substr

from webapp.judging.models import CriterionScore, JudgeJob
from webapp.judging.presentation import judge_label, verdict
from webapp.reviews import agreement, selectors
from webapp.reviews.criteria import FormCriterion, form_criteria
from webapp.reviews.models import HumanLabel, LabelSource, LabelWrites, PairwiseJudgment, PairwiseLabel
from webapp.rollouts.models import Rollout
from webapp.rubrics.models import RubricVersion

DEFAULT_RESAMPLES = 1000

logger = logging.getLogger(__name__)

ITEMS_SQL = """
    WITH {human}
    SELECT s.judge_fingerprint, s.criterion_key, s.rollout_id, s.score, h.index_sum, h.raters, h.mean_value
    FROM human h
    JOIN judging_criterionscore s
      ON s.rollout_id = h.rollout_id AND s.criterion_key = h.criterion_key
     AND s.rubric_version_id = %(score_version)s
    WHERE {score_finite}
"""

# Items labeled by two or more people, as distinct patterns of values with their counts: the human–human ceiling.
# Alpha does not depend on who gave which value, only on each item's values. Grouping by (rollout, criterion), the
# order of the unique index, reads the labels in index order with no sort (half the time at 100k labels).
MULTI_SQL = """
    SELECT criterion_key, item_values, COUNT(*)
    FROM (
        SELECT criterion_key, array_agg(value ORDER BY value) AS item_values
        FROM reviews_humanlabel
        WHERE rubric_version_id = %s AND value IS NOT NULL
        GROUP BY rollout_id, criterion_key
        HAVING COUNT(*) >= 2
    ) items
    GROUP BY 1, 2
"""

# The same patterns where the database has no array_agg (SQLite, the embedded mode): each multiply-labeled item's
# values in order, grouped into patterns in Python.
MULTI_PORTABLE_SQL = """
    SELECT l.criterion_key, l.rollout_id, l.value
    FROM reviews_humanlabel l
    JOIN (
        SELECT rollout_id, criterion_key
        FROM reviews_humanlabel
        WHERE rubric_version_id = %s AND value IS NOT NULL
        GROUP BY rollout_id, criterion_key
        HAVING COUNT(*) >= 2
    ) multi ON multi.rollout_id = l.rollout_id AND multi.criterion_key = l.criterion_key
    WHERE l.rubric_version_id = %s AND l.value IS NOT NULL
    ORDER BY l.criterion_key, l.rollout_id, l.value
"""

DISAGREEMENTS_SQL = """
    WITH {human}
    SELECT s.rollout_id, s.score, s.raw_choice, h.index_sum, h.raters, h.mean_value
    FROM human h
    JOIN judging_criterionscore s
      ON s.rollout_id = h.rollout_id AND s.criterion_key = h.criterion_key AND s.rubric_version_id = %(version)s
    WHERE s.judge_fingerprint = %(fingerprint)s AND h.criterion_key = %(key)s AND {score_finite}
"""


@dataclass(frozen=True)
class HeatCell:
    count: int
    share: float  # of the row (human label)
    alpha: float  # 0..1 colour intensity


@dataclass(frozen=True)
class HeatRow:
    label: str
    cells: list[HeatCell]
    n: int


@dataclass(frozen=True)
class CalibrationPoint:
    x: float
    y: float
    r: float
    n: int
    mean_judge: float
    mean_human: float


@dataclass(frozen=True)
class Coverage:
    """Where the labelled items of one criterion went, for one judge (all counts are items)."""

    labelled: int  # items with at least one human label
    paired: int  # items in the figures: a finite judge score and a human value
    judge_failed: int  # the judge call failed (score stored empty, with its error)
    judge_missing: int  # no score from this judge, or a NaN / infinite one
    split: int  # labelled items whose labels split exactly between two choices
    excluded: int  # items with a judge score left out because their labels split


@dataclass
class CriterionAgreement:
    fingerprint: str
    judge_name: str
    criterion: FormCriterion
    report: agreement.AgreementReport
    coverage: Coverage | None = None
    heatmap_labels: list[str] = field(default_factory=list)
    heatmap: list[HeatRow] = field(default_factory=list)
    calibration: list[agreement.CalibrationBin] = field(default_factory=list)
    calibration_points: list[CalibrationPoint] = field(default_factory=list)
    ceiling: agreement.Stat | None = None

    @property
    def headline(self) -> agreement.Stat:
        """The figure the training gate reads: quadratic-weighted kappa for choices and integer scales,
        interval alpha for a continuous scale."""
        return self.report.weighted_kappa if self.criterion.stat_kind == "ordinal" else self.report.krippendorff_alpha

    @property
    def headline_name(self) -> str:
        return headline_name(self.criterion)

    @property
    def calibration_error(self) -> float | None:
        """Expected calibration error of the judge's 0..1 score against the humans' (agreement.py)."""
        return agreement.expected_calibration_error(self.calibration)

    @property
    def kappa_name(self) -> str:
        return kappa_name(self.criterion)


def kappa_name(criterion: FormCriterion) -> str:
    """The one kappa a criterion kind gets, as the page names it."""
    if criterion.stat_kind != "ordinal":
        return "Kappa (none for a continuous scale)"
    what = f"{criterion.steps + 1} {'points' if criterion.is_scale else 'choices'}"
    if criterion.steps == 1:
        return f"Cohen's kappa ({what})"
    return f"Quadratic-weighted kappa ({what})"


def headline_name(criterion: FormCriterion) -> str:
    return kappa_name(criterion) if criterion.stat_kind == "ordinal" else "Krippendorff's alpha (interval)"


def criterion_steps(criteria: list[FormCriterion]) -> dict[str, int]:
    return {c.key: c.steps for c in criteria}


def _criterion_signature(spec: dict) -> str:
    # What a label answers: everything but the weight, which changes the reward and not the question.
    return json.dumps({k: v for k, v in spec.items() if k != "weight"}, sort_keys=True)


def carried_label_versions(version: RubricVersion) -> dict[str, list[int]]:
    """Criterion key → earlier versions of the same rubric whose criterion of that key is unchanged (same question,
    choices or scale; the weight may differ): their labels count for this version, so re-scoring the same labelled
    rollouts under v3 keeps v2's labels."""
    own = {c["key"]: _criterion_signature(c) for c in version.criteria}
    carried: dict[str, list[int]] = {}
    earlier = RubricVersion.objects.filter(rubric_id=version.rubric_id, pk__lt=version.pk).only("pk", "spec")
    for other in earlier.order_by("pk"):
        for c in other.criteria:
            if own.get(c.get("key")) == _criterion_signature(c):
                carried.setdefault(c["key"], []).append(other.pk)
    return carried


def judge_names(version: RubricVersion) -> dict[str, str]:
    """Fingerprint → the judge model that produced it (from the judge jobs of this version)."""
    names = {"programmatic": judge_label(fingerprint="programmatic")}
    for fingerprint, model, name in (
        JudgeJob.objects.filter(rubric_version=version).exclude(judge_fingerprint="").exclude(endpoint=None)
        .values_list("judge_fingerprint", "endpoint__model", "endpoint__name").order_by("-id")
    ):
        names.setdefault(fingerprint, judge_label(fingerprint=fingerprint, endpoint_name=name, endpoint_model=model))
    return names


def human_ceiling(version: RubricVersion, criteria: list[FormCriterion], *, n_resamples: int = 200) -> dict[str, agreement.Stat]:
    """Krippendorff's alpha among humans per criterion: how well any judge could possibly agree."""
    per_key: dict[str, list[tuple[list[float], int]]] = {}
    for key, values, count in _value_patterns(version):
        per_key.setdefault(key, []).append((values, count))
    result = {}
    for criterion in criteria:
        patterns = per_key.get(criterion.key, [])
        if not patterns:
            result[criterion.key] = agreement.Stat(None, 0, "no item has two human labels yet")
            continue
        # One column per distinct pattern of values, weighted by how many items share it.
        width = max(len(v) for v, _ in patterns)
        table = np.full((width, len(patterns)), np.nan)
        for column, (values, _) in enumerate(patterns):
            mapped = np.array(values, dtype=float)
            if criterion.steps:
                mapped = np.rint(mapped * criterion.steps)
            table[: len(mapped), column] = mapped
        # The same level and scale as the judge–human alpha next to it.
        level: agreement.AlphaLevel = "ordinal" if criterion.stat_kind == "ordinal" else "interval"
        result[criterion.key] = agreement.krippendorff_alpha(
            table, level=level, n_resamples=n_resamples, item_counts=[c for _, c in patterns])
    return result


def _value_patterns(version: RubricVersion) -> list[tuple[str, list[float], int]]:
    """(criterion key, one item's label values in order, how many items have exactly these values)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(MULTI_SQL, [version.pk])
            return cursor.fetchall()
        cursor.execute(MULTI_PORTABLE_SQL, [version.pk, version.pk])
        items = [(key, [value for *_, value in rows])
                 for (key, _), rows in itertools.groupby(cursor.fetchall(), key=lambda row: (row[0], row[1]))]
    counts = collections.Counter((key, tuple(values)) for key, values in items)
    return [(key, list(values), count) for (key, values), count in counts.items()]


def _points(criterion: FormCriterion, values: np.ndarray) -> np.ndarray:
    """0..1 values of a continuous scale in the scale's own points, so MAE and bias read in its units."""
    assert criterion.scale_min is not None and criterion.scale_max is not None
    return criterion.scale_min + values * (criterion.scale_max - criterion.scale_min)


def criterion_agreement(
    criterion: FormCriterion, pairs: selectors.PairCells, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> tuple[agreement.AgreementReport, list[agreement.CalibrationBin]]:
    """The report on the criterion's own scale (choice indices / integer points, or points of a continuous scale)
    and calibration bins on 0..1. `pairs` come from `selectors.label_score_cells`."""
    if criterion.stat_kind == "ordinal":
        report = agreement.agreement_report(
            pairs.judge, pairs.human, kind="ordinal", labels=criterion.categories, n_resamples=n_resamples,
            seed=seed, counts=pairs.counts)
        judge01, human01 = pairs.judge / criterion.steps, pairs.human / criterion.steps
    else:
        report = agreement.agreement_report(
            _points(criterion, pairs.judge), _points(criterion, pairs.human), kind="score", n_resamples=n_resamples,
            seed=seed, counts=pairs.counts)
        judge01, human01 = pairs.judge, pairs.human
    return report, agreement.calibration_bins(judge01, human01, bins=5, counts=pairs.counts,
                                              n_resamples=min(n_resamples, 200), seed=seed)


CACHE_SECONDS = 600


def data_signature(version: RubricVersion, *, sources: tuple[str, ...] = (LabelSource.LABEL,)) -> str:
    """Changes whenever a label of the version (or of an earlier version, which may carry labels over) is written or
    a judge job of the version makes progress.

    Cost flat in the number of labels: the labels' write counters (`LabelWrites`, kept by database triggers, so any
    insert, update or delete counts, cascades and raw SQL included) for these versions, by index, and the version's
    judge jobs. Scores are written by judge jobs, which count what they wrote; scores written outside a job show up
    within CACHE_SECONDS. `sources`: which kinds of labels the figures read.
    """
    # Labels carried over from earlier versions (`carried_label_versions`) change the figures too. A counter only
    # grows and the set of earlier versions only shrinks, so a signature never comes back after a write.
    label_versions = [0, version.pk, *RubricVersion.objects.filter(rubric_id=version.rubric_id, pk__lt=version.pk)
                      .values_list("pk", flat=True)]
    writes = LabelWrites.objects.filter(rubric_version_id__in=label_versions, source__in=sources).order_by(
        "rubric_version_id", "source").values_list("rubric_version_id", "source", "writes")
    labels = ",".join(f"{v}/{s}={n}" for v, s, n in writes)
    jobs = JudgeJob.objects.filter(rubric_version=version).aggregate(
        n=Count("pk"), last=Max("pk"), done=Sum("done"), finished=Max("finished_at"))
    return f"{labels}:{jobs['n']}:{jobs['last']}:{jobs['done']}:{jobs['finished']}"


def _cache_key(version: RubricVersion, n_resamples: int) -> str:
    return _versioned_key(f"reviews:agreement:{version.pk}:{n_resamples}", version, data_signature(version))


def _versioned_key(prefix: str, version: RubricVersion, signature: str) -> str:
    # The version's creation time keeps keys apart across databases that reuse ids (tests, restored backups)
    # sharing one Redis.
    return f"{prefix}:{hashlib.sha1(f'{version.created_at.isoformat()}|{signature}'.encode()).hexdigest()}"


def agreement_dashboard_cached(version: RubricVersion, *, n_resamples: int = DEFAULT_RESAMPLES) -> list[CriterionAgreement]:
    """The dashboard's figures, recomputed only when labels or judge jobs of the version changed.

    The cache is the shared one (Redis in the full stack, a directory under var/ in the embedded mode), so every web
    process and the worker that warmed it after a judge job read the same figures."""
    key = _cache_key(version, n_resamples)
    rows = cache.get(key)
    if rows is None:
        rows = agreement_dashboard(version, n_resamples=n_resamples)
        cache.set(key, rows, CACHE_SECONDS)
    return rows


def agreement_cache_warm(*, judge_job_id: int) -> bool:
    """After a judge job finished: compute its rubric version's figures now, so the next dashboard view reads them.

    False when there is nothing to warm (nobody labeled the version). Never raises: the job's scores are already
    committed, and a failed warm-up only means the next page view computes the figures itself.
    """
    version = RubricVersion.objects.filter(judge_jobs__pk=judge_job_id).first()
    if version is None or not HumanLabel.objects.filter(rubric_version=version).exists():
        return False
    try:
        cache.set(_cache_key(version, DEFAULT_RESAMPLES), agreement_dashboard(version), CACHE_SECONDS)
    except Exception:
        logger.exception("Could not warm the agreement dashboard of rubric version %s", version.pk)
        return False
    return True


def agreement_dashboard(version: RubricVersion, *, n_resamples: int = DEFAULT_RESAMPLES) -> list[CriterionAgreement]:
    criteria = form_criteria(version)
    by_key = {c.key: c for c in criteria}
    names = judge_names(version)
    ceiling = human_ceiling(version, criteria)
    cells, coverage = selectors.label_score_cells(
        label_version_id=version.pk, steps=criterion_steps(criteria), carried=carried_label_versions(version))
    result = []
    for (fingerprint, key), pairs in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        criterion = by_key.get(key)
        if criterion is None:
            continue
        report, calibration = criterion_agreement(criterion, pairs, n_resamples=n_resamples)
        labelled = coverage.get(key, selectors.LabelCoverage(0, 0, 0))
        entry = CriterionAgreement(
            fingerprint=fingerprint, judge_name=names.get(fingerprint, fingerprint[:16]), criterion=criterion,
            report=report, calibration=calibration, calibration_points=_calibration_points(calibration),
            ceiling=ceiling.get(key),
            coverage=Coverage(
                labelled=labelled.labelled, paired=pairs.n, judge_failed=pairs.failed,
                judge_missing=labelled.labelled - pairs.n - pairs.failed - pairs.split,
                split=labelled.split, excluded=pairs.split,
            ),
        )
        if report.confusion is not None:
            entry.heatmap_labels = [_category_label(criterion, v) for v in report.confusion.labels]
            entry.heatmap = _heatmap(report.confusion, entry.heatmap_labels)
        result.append(entry)
    return result


def _category_label(criterion: FormCriterion, value: float) -> str:
    if criterion.is_scale:
        assert criterion.scale_min is not None
        return f"{criterion.scale_min + value:g}"
    return criterion.options[int(value)].label


def _heatmap(confusion: agreement.ConfusionMatrix, labels: list[str]) -> list[HeatRow]:
    peak = max((c for row in confusion.counts for c in row), default=0) or 1
    rows = []
    for label, counts in zip(labels, confusion.counts, strict=True):
        total = sum(counts)
        rows.append(HeatRow(label, [HeatCell(c, c / total if total else 0.0, round(c / peak, 3)) for c in counts], total))
    return rows


PLOT = 200  # px; the calibration plot is a square with 0..1 on both axes


def _calibration_points(bins: list[agreement.CalibrationBin]) -> list[CalibrationPoint]:
    most = max((b.n for b in bins), default=0) or 1
    return [
        CalibrationPoint(
            x=round(b.mean_judge * PLOT, 1), y=round((1 - b.mean_human) * PLOT, 1), r=round(3 + 7 * math.sqrt(b.n / most), 1),
            n=b.n, mean_judge=b.mean_judge, mean_human=b.mean_human,
        )
        for b in bins
        if b.n and b.mean_judge is not None and b.mean_human is not None
    ]


def _human_query(sql: str, version: RubricVersion, criteria: list[FormCriterion], params: dict) -> list[tuple]:
    """Run one of this module's item queries with the shared `human` CTE (selectors.human_cte) in it."""
    human, human_params = selectors.human_cte(label_version_id=version.pk, steps=criterion_steps(criteria),
                                              carried=carried_label_versions(version))
    with connection.cursor() as cursor:
        cursor.execute(sql.format(human=human, score_finite=selectors.SCORE_FINITE), {**params, **human_params})
        return cursor.fetchall()


def item_value01(criterion: FormCriterion, index_sum: int, raters: int, mean_value) -> float | None:
    """An item's human value on 0..1 (None on a split): `agreement.human_value` through the shared selector rule."""
    value = selectors.item_human_value(steps=criterion.steps, index_sum=index_sum, raters=raters,
                                       mean_value=mean_value)
    if value is None or not criterion.steps:
        return value
    return value / criterion.steps


DISAGREEMENT_TEXT = 300  # characters of each completion shown in the disagreements list


def disagreements(version: RubricVersion, *, fingerprint: str, key: str, limit: int = 50) -> list[dict]:
    """Labeled items where the judge and the humans differ most, worst first (links go to the rollouts).
    Items whose labels split are listed too (human None): the humans themselves disagree there."""
    criteria = form_criteria(version)
    criterion = next((c for c in criteria if c.key == key), None)
    if criterion is None:
        return []
    rows = _human_query(DISAGREEMENTS_SQL, version, criteria, {"version": version.pk, "key": key,
                                                               "fingerprint": fingerprint})
    found = []
    for rollout_id, score, raw_choice, index_sum, raters, mean_value in rows:
        human = item_value01(criterion, index_sum, raters, mean_value)
        gap = 1.0 if human is None else abs(score - human)
        if gap > 1e-9:
            if human is None:
                shown = "split"
            elif criterion.options:
                shown = criterion.options[criterion.index_of(human) or 0].label
            else:
                shown = f"{_points(criterion, np.array([human]))[0]:g}"
            found.append({"rollout_id": rollout_id, "score": score, "raw_choice": raw_choice, "human": human,
                          "human_choice": shown, "raters": raters, "gap": gap,
                          "verdict": verdict(kind=criterion.kind, score=score, raw_choice=raw_choice)})
    found.sort(key=lambda d: (-d["gap"], d["rollout_id"]))
    found = found[:limit]
    # What was answered, so a reviewer sees the disagreement without opening each rollout (one query, cut in SQL).
    heads = dict(Rollout.objects.filter(pk__in=[d["rollout_id"] for d in found])
                 .annotate(head=Substr("completion", 1, DISAGREEMENT_TEXT + 1)).values_list("pk", "head"))
    for d in found:
        text = heads.get(d["rollout_id"]) or ""
        d["completion"] = text[:DISAGREEMENT_TEXT] + "…" if len(text) > DISAGREEMENT_TEXT else text
    return found


@dataclass(frozen=True)
class AnnotatorAgreement:
    username: str
    headline: agreement.Stat  # the criterion's headline figure, this annotator's labels against the judge
    percent_agreement: agreement.Stat


@dataclass(frozen=True)
class RaterAgreement:
    """The judge against each annotator, and alpha over every label with the judge as one more rater."""

    statistic: str
    annotators: list[AnnotatorAgreement]
    alpha_with_judge: agreement.Stat
    alpha_level: str


def rater_agreement(version: RubricVersion, *, fingerprint: str, key: str) -> RaterAgreement | None:
    """Per annotator and over all raters, for one judge × criterion (two queries). Labels as on the dashboard:
    the version's own and those carried over from earlier versions (each annotator's newest); values on the
    criterion's scale (step indices, or 0..1 for a continuous scale); non-finite values are missing."""
    criteria = form_criteria(version)
    criterion = next((c for c in criteria if c.key == key), None)
    if criterion is None:
        return None
    versions = [version.pk, *carried_label_versions(version).get(key, [])]
    newest: dict[tuple[str, int], tuple[int, float]] = {}
    for username, rollout_id, version_id, value in (
        HumanLabel.objects.filter(rubric_version_id__in=versions, criterion_key=key, value__isnull=False)
        .values_list("annotator__username", "rollout_id", "rubric_version_id", "value")
    ):
        if math.isfinite(value) and version_id >= newest.get((username, rollout_id), (-1, 0.0))[0]:
            newest[(username, rollout_id)] = (version_id, value)
    scores = {
        rollout_id: score for rollout_id, score in CriterionScore.objects.filter(
            rubric_version=version, criterion_key=key, judge_fingerprint=fingerprint, score__isnull=False)
        .values_list("rollout_id", "score") if math.isfinite(score)
    }

    def on_scale(value: float) -> float:
        return float(min(max(round(value * criterion.steps), 0), criterion.steps)) if criterion.steps else value

    annotators = sorted({username for username, _ in newest})
    items = sorted({rollout_id for _, rollout_id in newest})
    rows = []
    for username in annotators:
        mine = [(on_scale(scores[r]), on_scale(newest[(username, r)][1]))
                for r in items if (username, r) in newest and r in scores]
        judge = np.array([j for j, _ in mine], dtype=float)
        human = np.array([h for _, h in mine], dtype=float)
        rows.append(AnnotatorAgreement(username, _headline(criterion, judge, human),
                                       agreement.percent_agreement(judge, human)))
    table = np.full((len(annotators) + 1, len(items)), np.nan)
    column = {r: i for i, r in enumerate(items)}
    row_of = {u: i for i, u in enumerate(annotators)}
    for (username, rollout_id), (_, value) in newest.items():
        table[row_of[username], column[rollout_id]] = on_scale(value)
    for rollout_id in items:
        if rollout_id in scores:
            table[-1, column[rollout_id]] = on_scale(scores[rollout_id])
    level: agreement.AlphaLevel = "ordinal" if criterion.stat_kind == "ordinal" else "interval"
    alpha = agreement.krippendorff_alpha(table, level=level) if items else agreement.Stat(None, 0, "no label yet")
    return RaterAgreement(headline_name(criterion), rows, alpha, level)


def labeled_versions(project_id: int) -> list[RubricVersion]:
    """Versions with labels, and later versions of the same rubrics, which may carry those labels over
    (`carried_label_versions`). Whether a version has labels is one index probe: the cost follows the number of
    versions, not of labels."""
    first_labelled = (
        RubricVersion.objects.filter(rubric__project_id=project_id)
        .filter(Exists(HumanLabel.objects.filter(rubric_version_id=OuterRef("pk"))))
        .values("rubric_id").annotate(first=Min("pk")).order_by()
    )
    since = Q(pk__in=[])
    for row in first_labelled:
        since |= Q(rubric_id=row["rubric_id"], pk__gte=row["first"])
    return list(RubricVersion.objects.filter(since).select_related("rubric").order_by("-id"))


# --- judge-bias diagnostics ------------------------------------------------------------------------------------------


_FAMILY_ALIASES = {"meta": "llama", "mixtral": "mistral", "chatgpt": "gpt", "o1": "gpt", "o3": "gpt", "o4": "gpt",
                   "smollm2": "smollm", "qwq": "qwen"}


def model_family(name: str) -> str:
    """'Qwen/Qwen2.5-7B-Instruct' → 'qwen', 'meta-llama/Llama-3.1-8B' → 'llama', 'gpt-4o-mini' → 'gpt'."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    match = re.match(r"[a-z]+", base) or re.match(r"[a-z0-9]+", base)
    token = match.group(0) if match else base
    return _FAMILY_ALIASES.get(token, token)


@dataclass(frozen=True)
class LengthRow:
    fingerprint: str
    key: str
    result: agreement.LengthBias


@dataclass(frozen=True)
class JudgePositionRow:
    """One LM judge's position-swap check: the same pairs judged in both orders."""

    fingerprint: str
    judge_model: str
    pairs: int  # pairs asked, failed ones included
    failed: int  # pairs where a verdict is missing (call failed or unreadable)
    report: agreement.PositionSwapReport


@dataclass(frozen=True)
class BiasDiagnostics:
    length: list[LengthRow]
    pairwise_n: int
    position: agreement.PositionSwapReport
    judge_position: list[JudgePositionRow]
    same_family: list[tuple[str, str, str]]  # (judge model, policy model, family)
    judge_models: list[str]
    policy_models: list[str]


LENGTH_SQL = """
    WITH {human}
    SELECT s.judge_fingerprint, s.criterion_key, COALESCE(r.completion_tokens, length(r.completion)), s.score,
           h.index_sum, h.raters, h.mean_value
    FROM human h
    JOIN judging_criterionscore s
      ON s.rollout_id = h.rollout_id AND s.criterion_key = h.criterion_key AND s.rubric_version_id = %(version)s
    JOIN rollouts_rollout r ON r.id = s.rollout_id
    WHERE {score_finite} AND s.judge_fingerprint <> 'programmatic'
"""


def _display_verdict(label: PairwiseLabel) -> str:
    """The verdict as the annotator saw it: "A" = the rollout shown first (left)."""
    if label.preferred == "tie":
        return "tie"
    first = "a" if label.shown_a_first else "b"
    return "A" if label.preferred == first else "B"


BIAS_SOURCES = (LabelSource.LABEL, LabelSource.PAIRWISE, LabelSource.JUDGMENT)


def bias_diagnostics_cached(version: RubricVersion) -> BiasDiagnostics:
    """`bias_diagnostics`, recomputed only when the labels, pairwise labels, position-swap verdicts or judge jobs of
    the version changed (the dashboard's signature over the kinds of labels it reads), in the shared cache."""
    key = _versioned_key(f"reviews:bias:{version.pk}", version, data_signature(version, sources=BIAS_SOURCES))
    diagnostics = cache.get(key)
    if diagnostics is None:
        diagnostics = bias_diagnostics(version)
        cache.set(key, diagnostics, CACHE_SECONDS)
    return diagnostics


def bias_diagnostics(version: RubricVersion) -> BiasDiagnostics:
    criteria = form_criteria(version)
    by_key = {c.key: c for c in criteria}
    rows = _human_query(LENGTH_SQL, version, criteria, {"version": version.pk})
    grouped: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    for fingerprint, key, length, score, index_sum, raters, mean_value in rows:
        if key in by_key:
            human = item_value01(by_key[key], index_sum, raters, mean_value)
            grouped.setdefault((fingerprint, key), []).append((length, score, human))
    length = [
        LengthRow(fp, key, agreement.length_score_correlation(
            [v[0] for v in values], [v[1] for v in values], [v[2] for v in values]))
        for (fp, key), values in sorted(grouped.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    # Position consistency: the same pair judged by people who saw it in both orders.
    by_pair: dict[tuple[int, int], dict[bool, list[str]]] = {}
    labels = list(PairwiseLabel.objects.filter(rubric_version=version).only(
        "rollout_a_id", "rollout_b_id", "preferred", "shown_a_first"))
    for label in labels:
        by_pair.setdefault((label.rollout_a_id, label.rollout_b_id), {True: [], False: []})[label.shown_a_first].append(
            _display_verdict(label))
    first, swapped = [], []
    for orders in by_pair.values():
        for a, b in zip(orders[True], orders[False], strict=False):
            first.append(a)
            swapped.append(b)
    position = agreement.position_swap_consistency(first, swapped)
    if not first and labels:
        # No pair seen in both orders yet: still report how often the left rollout won.
        decided = [v for v in map(_display_verdict, labels) if v != "tie"]
        rate = agreement.Stat(sum(v == "A" for v in decided) / len(decided), len(decided)) if decided else \
            agreement.Stat(None, 0, "every verdict was a tie")
        position = agreement.PositionSwapReport(0, position.consistency, rate, position.tie_rate)
    judge_models = sorted(set(
        JudgeJob.objects.filter(rubric_version=version).exclude(endpoint=None).values_list("endpoint__model", flat=True)))
    policy_models = sorted(set(
        Rollout.objects.filter(scores__rubric_version=version).exclude(model_name="")
        .values_list("model_name", flat=True).distinct()[:50]))
    same = [(j, p, model_family(j)) for j in judge_models for p in policy_models if model_family(j) == model_family(p)]
    return BiasDiagnostics(length, len(labels), position, judge_position(version), same, judge_models, policy_models)


def judge_position(version: RubricVersion) -> list[JudgePositionRow]:
    """Position-swap consistency per LM judge, from its pairwise judgments of this version (one query)."""
    by_judge: dict[str, list[tuple[str, str, str]]] = {}
    for fingerprint, model, first, swapped in (
        PairwiseJudgment.objects.filter(rubric_version=version)
        .values_list("judge_fingerprint", "judge_model", "verdict_first", "verdict_swapped").order_by("pk")
    ):
        by_judge.setdefault(fingerprint, []).append((model, first, swapped))
    rows = []
    for fingerprint, verdicts in sorted(by_judge.items()):
        complete = [(f, s) for _, f, s in verdicts if f and s]
        report = agreement.position_swap_consistency(
            [f for f, _ in complete], [s for _, s in complete])  # type: ignore[misc]
        rows.append(JudgePositionRow(fingerprint, verdicts[-1][0], len(verdicts), len(verdicts) - len(complete), report))
    return rows


# --- align loop: two rubric versions or two judges on the same labeled items ----------------------------------------


@dataclass(frozen=True)
class Side:
    version: RubricVersion
    fingerprint: str


@dataclass(frozen=True)
class AlignRow:
    criterion: FormCriterion
    statistic: str
    n: int
    a: agreement.Stat
    b: agreement.Stat
    delta: float | None
    delta_low: float | None
    delta_high: float | None

    @property
    def verdict(self) -> str:
        if self.delta is None:
            return "not comparable"
        if self.delta_low is not None and self.delta_low > 0:
            return "moved up"
        if self.delta_high is not None and self.delta_high < 0:
            return "moved down"
        return "no clear change"


def _paired_items(*, labels: RubricVersion, criteria: list[FormCriterion], score_version: int
                  ) -> Iterator[tuple[str, FormCriterion, int, float, float]]:
    """(judge fingerprint, criterion, rollout id, judge, human) for every judged and labelled item, both values on the
    criterion's scale (the judge's score rounded to its step, the item's one human value); splits left out. The
    dashboard's pairing, item by item."""
    by_key = {c.key: c for c in criteria}
    for fp, key, rollout_id, score, index_sum, raters, mean_value in _human_query(
            ITEMS_SQL, labels, criteria, {"score_version": score_version}):
        criterion = by_key.get(key)
        if criterion is None:
            continue
        human = selectors.item_human_value(steps=criterion.steps, index_sum=index_sum, raters=raters,
                                           mean_value=mean_value)
        if human is not None:
            yield fp, criterion, rollout_id, selectors.judge_on_scale(score, criterion.steps), float(human)


def _items(*, labels: RubricVersion, criteria: list[FormCriterion], score_version: int, fingerprint: str
           ) -> dict[str, dict[int, tuple[float, float]]]:
    """criterion key → rollout id → (judge, human) on the criterion's scale; splits left out, like the dashboard."""
    result: dict[str, dict[int, tuple[float, float]]] = {}
    for fp, criterion, rollout_id, judge, human in _paired_items(labels=labels, criteria=criteria,
                                                                 score_version=score_version):
        if fp == fingerprint:
            result.setdefault(criterion.key, {})[rollout_id] = (judge, human)
    return result


@dataclass(frozen=True)
class ItemAgreement:
    agree: set[int]  # rollouts whose every judged and labelled criterion is within the tolerance, by every judge
    disagree: set[int]  # rollouts with at least one criterion the tolerance or more apart


def item_agreement(version: RubricVersion, *, tolerance: float) -> ItemAgreement:
    """Rollouts where judges and humans agree or disagree under `version`, item by item as the dashboard pairs them
    (one human value per item, labels carried from unchanged criteria of earlier versions, the judge's score on the
    criterion's scale, splits left out). The gap is measured on 0..1: one step of a yes/no question is 1."""
    agree: set[int] = set()
    apart: set[int] = set()
    for _, criterion, rollout_id, judge, human in _paired_items(labels=version, criteria=form_criteria(version),
                                                                score_version=version.pk):
        gap = abs(judge - human) / (criterion.steps or 1)
        (apart if gap >= tolerance else agree).add(rollout_id)
    return ItemAgreement(agree=agree - apart, disagree=apart)


def _headline(criterion: FormCriterion, judge: np.ndarray, human: np.ndarray) -> agreement.Stat:
    """The dashboard's headline figure (CriterionAgreement.headline) on plain arrays."""
    if criterion.stat_kind == "ordinal":
        return agreement.cohen_kappa(judge, human, weights="quadratic", labels=criterion.categories)
    return agreement.krippendorff_alpha(np.vstack([judge, human]), level="interval")


def align_compare(*, labels: RubricVersion, a: Side, b: Side, n_resamples: int = 500, seed: int = 0) -> list[AlignRow]:
    """Agreement of side A and side B with the same humans on the items both scored; the difference B − A gets a
    paired bootstrap interval (items resampled together), so "moved" means more than resampling noise."""
    criteria = form_criteria(labels)
    items_a = _items(labels=labels, criteria=criteria, score_version=a.version.pk, fingerprint=a.fingerprint)
    items_b = _items(labels=labels, criteria=criteria, score_version=b.version.pk, fingerprint=b.fingerprint)
    rng = np.random.default_rng(seed)
    rows = []
    for criterion in criteria:
        left, right = items_a.get(criterion.key, {}), items_b.get(criterion.key, {})
        common = sorted(set(left) & set(right))
        ja = np.array([left[i][0] for i in common], dtype=float)
        jb = np.array([right[i][0] for i in common], dtype=float)
        h = np.array([left[i][1] for i in common], dtype=float)
        stat_a, stat_b = _headline(criterion, ja, h), _headline(criterion, jb, h)
        delta = low = high = None
        if stat_a.value is not None and stat_b.value is not None:
            delta = stat_b.value - stat_a.value
            diffs = []
            for _ in range(n_resamples if len(common) >= 2 else 0):
                pick = rng.integers(0, len(common), len(common))
                da, db = _headline(criterion, ja[pick], h[pick]).value, _headline(criterion, jb[pick], h[pick]).value
                if da is not None and db is not None:
                    diffs.append(db - da)
            if len(diffs) >= n_resamples * 0.9:
                low, high = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
        rows.append(AlignRow(criterion, headline_name(criterion), len(common), stat_a, stat_b, delta, low, high))
    return rows


def version_fingerprints(version: RubricVersion) -> list[str]:
    """Judges that scored this version (from its judge jobs; programmatic checks included)."""
    found = set(JudgeJob.objects.filter(rubric_version=version).exclude(judge_fingerprint="")
                .values_list("judge_fingerprint", flat=True))
    with connection.cursor() as cursor:
        # Scores written without a job row (imports, training rewards) count too; the index makes this cheap.
        cursor.execute(
            "SELECT DISTINCT judge_fingerprint FROM judging_criterionscore WHERE rubric_version_id = %s LIMIT 20",
            [version.pk],
        )
        found |= {row[0] for row in cursor.fetchall()}
    return sorted(found)


def labeled_rollout_ids(version: RubricVersion) -> list[int]:
    return list(HumanLabel.objects.filter(rubric_version=version).values_list("rollout_id", flat=True)
                .distinct().order_by("rollout_id"))
