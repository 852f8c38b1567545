from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404

from webapp.core.jobs import job_expire_if_stale
from webapp.core.models import Project
from webapp.judging.models import CriterionScore
from webapp.reviews.agreement import human_value as agreement_human_value
from webapp.reviews.blind import blind_rollout_ids, judge_scores_visible  # noqa: F401 (one rule, re-exported)
from webapp.reviews.models import (
    AssignmentStatus,
    HumanLabel,
    PairwiseLabel,
    PositionCheckJob,
    ReviewAssignment,
    ReviewItem,
    ReviewQueue,
)
from webapp.rollouts.models import Rollout
from webapp.rollouts.selectors import RolloutFilterMeaning

if TYPE_CHECKING:
    from webapp.rubrics.models import RubricVersion


def queue_list(project: Project) -> QuerySet[ReviewQueue]:
    return (
        project.review_queues.select_related("created_by", "rubric_version__rubric")
        .annotate(
            item_count=Count("items", distinct=True),
            complete_count=Count("items", filter=Q(items__completed_count__gte=1), distinct=True),
        )
        .order_by("-id")
    )


def queue_get(project: Project, queue_id: int) -> ReviewQueue:
    """The queue with its rubric version, and `has_assignees` (whether only named annotators may work on it)."""
    named = ReviewQueue.assignees.through.objects.filter(reviewqueue_id=OuterRef("pk"))
    return get_object_or_404(
        ReviewQueue.objects.select_related("rubric_version__rubric").annotate(has_assignees=Exists(named)),
        project=project, pk=queue_id,
    )


def item_get(queue: ReviewQueue, item_id: int) -> ReviewItem:
    item = get_object_or_404(
        ReviewItem.objects.select_related("rollout__task", "rollout__example"),
        queue=queue, pk=item_id,
    )
    item.queue = queue  # the caller's copy already carries the rubric version
    return item


def item_reserved(queue: ReviewQueue, item_id: int, user: Any, *, rollout: bool = True) -> tuple[ReviewItem, ReviewAssignment | None]:
    """The item with `user`'s assignment on it, in one query where the assignment exists (every request of the
    labeling page); 404 when the queue has no such item, assignment None when the user holds none.

    `rollout=False` for the writes (submit, autosave, skip), which need the item's ids only: joining the rollout with
    its task and example and decoding their JSON doubled the cost of the query."""
    related = ["item__rollout__task", "item__rollout__example"] if rollout else ["item"]
    assignment = (
        ReviewAssignment.objects.filter(item__queue=queue, item_id=item_id, annotator=user)
        .select_related(*related).first()
    )
    if assignment is None:
        return item_get(queue, item_id), None
    item = assignment.item
    item.queue = queue
    return item, assignment


QUEUE_TOTALS_SECONDS = 5


def _queue_totals_key(queue_id: int) -> str:
    return f"reviews:queue-totals:{queue_id}"


def queue_totals_cached(queue: ReviewQueue) -> QueueProgress:
    """`queue_totals` for the labeling page's header, recomputed at most every few seconds: the aggregate reads every
    item of the queue, and dozens of annotators load a page each second. A submit adds its label to the cached totals
    (`queue_totals_label_done`), so the annotator's own count is exact; other annotators' work shows within the few
    seconds. The queue page (`queue_progress`) is exact."""
    key = _queue_totals_key(queue.pk)
    entry: tuple[float, QueueProgress] | None = cache.get(key)
    if entry is None:
        entry = (time.time() + QUEUE_TOTALS_SECONDS, queue_totals(queue))
        cache.set(key, entry, QUEUE_TOTALS_SECONDS)
    return entry[1]


def queue_totals_label_done(*, queue_id: int, completes_item: bool) -> None:
    """Count a just-committed done turn in the cached header totals (no query), keeping their expiry: run from the
    submit's on_commit. A concurrent submit may overwrite this count; the next recompute, seconds later, is exact."""
    key = _queue_totals_key(queue_id)
    entry: tuple[float, QueueProgress] | None = cache.get(key)
    if entry is None:
        return
    expires, totals = entry
    left = expires - time.time()
    if left <= 0:
        return
    totals = replace(totals, labels_done=min(totals.labels_done + 1, totals.labels_needed),
                     complete=min(totals.complete + int(completes_item), totals.items))
    cache.set(key, (expires, totals), left)


@dataclass(frozen=True)
class AnnotatorProgress:
    username: str
    done: int
    skipped: int
    reserved: int


@dataclass(frozen=True)
class QueueProgress:
    items: int
    complete: int  # items with reviewers_per_item done labels
    labels_needed: int
    labels_done: int
    annotators: list[AnnotatorProgress]


def queue_totals(queue: ReviewQueue) -> QueueProgress:
    """Items and labels done, in one aggregate query (the labeling page's header)."""
    totals = queue.items.aggregate(
        items=Count("pk"), complete=Count("pk", filter=Q(completed_count__gte=queue.reviewers_per_item)),
        done=Sum("completed_count"),
    )
    return QueueProgress(
        items=totals["items"], complete=totals["complete"], labels_needed=totals["items"] * queue.reviewers_per_item,
        labels_done=totals["done"] or 0, annotators=[],
    )


def queue_progress(queue: ReviewQueue) -> QueueProgress:
    """Totals plus one row per annotator: two aggregate queries, whatever the queue's size."""
    totals = queue_totals(queue)
    rows = (
        ReviewAssignment.objects.filter(item__queue=queue).values("annotator__username")
        .annotate(
            done=Count("pk", filter=Q(status=AssignmentStatus.DONE)),
            skipped=Count("pk", filter=Q(status=AssignmentStatus.SKIPPED)),
            reserved=Count("pk", filter=Q(status=AssignmentStatus.RESERVED)),
        )
        .order_by("-done", "annotator__username")
    )
    annotators = [AnnotatorProgress(r["annotator__username"], r["done"], r["skipped"], r["reserved"]) for r in rows]
    return QueueProgress(totals.items, totals.complete, totals.labels_needed, totals.labels_done, annotators)


def assignment_for(item: ReviewItem, user: Any) -> ReviewAssignment | None:
    return ReviewAssignment.objects.filter(item=item, annotator=user).first()


def labels_by_rollout(version_id: int, user: Any, rollout_ids: list[int]) -> dict[int, dict[str, HumanLabel]]:
    """`user`'s labels of several rollouts under one rubric version, in one query: rollout id → criterion key → label."""
    result: dict[int, dict[str, HumanLabel]] = {r: {} for r in rollout_ids}
    for label in HumanLabel.objects.filter(rollout_id__in=rollout_ids, rubric_version_id=version_id, annotator=user):
        result[label.rollout_id][label.criterion_key] = label
    return result


def scores_by_rollout(version_id: int, rollout_ids: list[int]) -> dict[int, dict[str, list[CriterionScore]]]:
    """Judge scores of several rollouts under one rubric version, in one query: rollout id → criterion key → scores."""
    result: dict[int, dict[str, list[CriterionScore]]] = {r: {} for r in rollout_ids}
    if rollout_ids:
        for score in CriterionScore.objects.filter(rollout_id__in=rollout_ids, rubric_version_id=version_id).select_related("job__endpoint").order_by(
                "criterion_key", "judge_fingerprint"):
            result[score.rollout_id].setdefault(score.criterion_key, []).append(score)
    return result


def item_labels(item: ReviewItem, user: Any) -> dict[str, HumanLabel]:
    return {
        label.criterion_key: label
        for label in HumanLabel.objects.filter(
            rollout_id=item.rollout_id, rubric_version_id=item.queue.rubric_version_id, annotator=user
        )
    }


def pairwise_label(item: ReviewItem, user: Any) -> PairwiseLabel | None:
    return PairwiseLabel.objects.filter(
        rollout_a_id=item.rollout_id, rollout_b_id=item.rollout_b_id, rubric_version_id=item.queue.rubric_version_id,
        criterion_key="", annotator=user,
    ).first()


def item_scores(item: ReviewItem) -> dict[str, list[CriterionScore]]:
    """Judge scores of the item's rollout under the queue's rubric version, per criterion key."""
    result: dict[str, list[CriterionScore]] = {}
    for score in CriterionScore.objects.filter(
        rollout_id=item.rollout_id, rubric_version_id=item.queue.rubric_version_id
    ).select_related("job__endpoint").order_by("criterion_key", "judge_fingerprint"):
        result.setdefault(score.criterion_key, []).append(score)
    return result


def rollout_full(rollout_id: int) -> Rollout:
    return Rollout.objects.select_related("task", "example").get(pk=rollout_id)


# --- judge scores paired with human labels ---------------------------------------------------------------------------

# An item's labels are summarised as exact integers: the sum of their step indices (a 0..1 label v on a criterion
# with `steps` steps is step round(v · steps)) and their count. `agreement.human_value` turns those two integers into
# the human value. Continuous scales (steps 0) keep the mean label: the label itself where all agree, else averaged
# as NUMERIC in Postgres so 0.1, 0.2, 0.3 average to 0.2 (float AVG gives 0.20000000000000004). Non-finite values
# (NaN, ±Infinity) never enter: such a label is missing, such a score counts as missing.
# The pairs statement gives (judge, criterion, judge score, human summary) with their count; the coverage statement
# counts the labelled items per criterion and summary, for the missing-data table.
_FINITE = "{col} >= -1e308 AND {col} <= 1e308"
_HUMAN_CTE = """
    human AS (
        SELECT l.rollout_id, l.criterion_key,
               SUM(CAST(ROUND(l.value * {steps}) AS INTEGER)) AS index_sum,
               {mean} AS mean_value,
               COUNT(*) AS raters
        FROM reviews_humanlabel l
        WHERE {versions} AND {label_finite}
        GROUP BY l.rollout_id, l.criterion_key
    )
"""
# Labels carried over from earlier versions whose criterion did not change: each annotator's newest label counts.
_NEWEST_ONLY = """ AND NOT EXISTS (
            SELECT 1 FROM reviews_humanlabel n
            WHERE n.rollout_id = l.rollout_id AND n.criterion_key = l.criterion_key AND n.annotator_id = l.annotator_id
              AND n.rubric_version_id > l.rubric_version_id AND {newer_versions} AND {newer_finite}
        )"""
_LABEL_SCORE_SQL = """
    WITH {human}
    SELECT s.judge_fingerprint, s.criterion_key, s.score, h.index_sum, h.raters, h.mean_value, COUNT(*)
    FROM human h
    JOIN judging_criterionscore s
      ON s.rollout_id = h.rollout_id AND s.criterion_key = h.criterion_key
     AND s.rubric_version_id = %(score_version)s
    GROUP BY 1, 2, 3, 4, 5, 6
"""
# A second statement rather than a UNION: a CTE read twice is materialised, and the planner's estimate for it then
# hashes the million scores instead of the labelled items (1.4 s instead of 0.5 s at 1M scores).
_LABEL_COVERAGE_SQL = """
    WITH {human}
    SELECT criterion_key, index_sum, raters, COUNT(*)
    FROM human
    GROUP BY 1, 2, 3
"""


@dataclass(frozen=True)
class PairCells:
    """One judge × criterion: distinct (judge value, human value) pairs and how many items share each, plus the
    labelled items that did not pair and why.

    Values are on the criterion's own scale: step indices 0..steps for choices and integer scales, 0..1 for a
    continuous scale."""

    judge: np.ndarray
    human: np.ndarray
    counts: np.ndarray
    failed: int = 0  # labelled items whose judge call failed (score empty)
    non_finite: int = 0  # labelled items whose score is NaN or infinite: counted as missing
    split: int = 0  # scored items whose labels split exactly between two choices: excluded

    @property
    def n(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class LabelCoverage:
    """Labelled items of one criterion: how many, how many carry two or more labels, how many split."""

    labelled: int
    multi: int
    split: int


def judge_on_scale(score: float, steps: int) -> float:
    """A judge's 0..1 score on the criterion's scale: the nearest step index for choices and integer scales (steps),
    the score itself for a continuous scale (steps 0)."""
    return float(min(max(round(score * steps), 0), steps)) if steps else float(score)


def label_gap(*, score: float, value: float, steps: int) -> float:
    """How far a judge's score is from one human label, on 0..1, both on the criterion's scale (one step of a yes/no
    question is 1): the per-label counterpart of the dashboard's per-item pairing."""
    label = float(round(value * steps)) if steps else float(value)
    return abs(judge_on_scale(score, steps) - label) / (steps or 1)


def item_human_value(*, steps: int, index_sum: int, raters: int, mean_value: Any) -> float | None:
    """The human value of an item from its SQL summary: `agreement.human_value` for ordinal criteria (None on a
    split), the mean label for a continuous scale."""
    if steps:
        return agreement_human_value(int(index_sum), int(raters))
    return None if mean_value is None else float(mean_value)


SCORE_FINITE = _FINITE.format(col="s.score")


def human_cte(
    *, label_version_id: int, steps: dict[str, int], carried: dict[str, list[int]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The `human` common table expression (one row per labelled rollout × criterion: index_sum, mean_value, raters)
    and its parameters, for every query that pairs labels with scores. Turn a row into the human value with
    `item_human_value`.

    `carried`: criterion key → earlier rubric versions whose labels of that criterion count too (the criterion did
    not change, see `dashboard.carried_label_versions`); an annotator who labelled the item under several of them
    counts once, with the newest label."""
    params: dict[str, Any] = {"label_version": label_version_id}
    whens = []
    for i, (key, n) in enumerate(sorted(steps.items())):
        params[f"hkey{i}"], params[f"hsteps{i}"] = key, int(n)
        whens.append(f"WHEN %(hkey{i})s THEN %(hsteps{i})s")
    case = "CASE l.criterion_key {} ELSE 0 END".format(" ".join(whens)) if whens else "0"
    # The NUMERIC mean costs a third of the query at 100k labels: only where a continuous scale needs it.
    mean = (
        "CASE WHEN MIN(l.value) = MAX(l.value) THEN MIN(l.value) ELSE AVG(CAST(l.value AS NUMERIC)) END"
        if not all(steps.values()) else "NULL"
    )

    def versions(alias: str) -> str:
        clauses = [f"{alias}.rubric_version_id = %(label_version)s"]
        for i, (key, ids) in enumerate(sorted((carried or {}).items())):
            if not ids:
                continue
            params[f"ckey{i}"] = key
            placeholders = []
            for j, version_id in enumerate(ids):
                params[f"cv{i}_{j}"] = int(version_id)
                placeholders.append(f"%(cv{i}_{j})s")
            clauses.append(f"({alias}.criterion_key = %(ckey{i})s AND {alias}.rubric_version_id IN "
                           f"({', '.join(placeholders)}))")
        return clauses[0] if len(clauses) == 1 else "(" + " OR ".join(clauses) + ")"

    label_filter = versions("l")
    finite = _FINITE.format(col="l.value")
    if label_filter.startswith("("):
        finite += _NEWEST_ONLY.format(newer_versions=versions("n"), newer_finite=_FINITE.format(col="n.value"))
    return _HUMAN_CTE.format(steps=case, mean=mean, versions=label_filter, label_finite=finite), params


def label_score_cells(
    *, label_version_id: int, steps: dict[str, int], score_version_id: int | None = None,
    work_mem: str | None = "64MB", carried: dict[str, list[int]] | None = None,
) -> tuple[dict[tuple[str, str], PairCells], dict[str, LabelCoverage]]:
    """Judge scores paired with human labels, aggregated in SQL: (judge fingerprint, criterion key) → cells, and
    criterion key → labelled items. `steps`: criterion key → steps of its scale (0 = continuous); other keys are
    left out.

    The agreement dashboard, the align loop and the training launcher's calibration gate all read this, so an item's
    human value has one definition. Postgres returns a few hundred rows, whether 1,000 or 1,000,000 scores stand
    behind them. `work_mem=None` keeps it to a single statement (no transaction around a SET LOCAL).
    """
    params: dict[str, Any] = {"label_version": label_version_id, "score_version": score_version_id or label_version_id}
    if not steps:
        return {}, {}
    human, human_params = human_cte(label_version_id=label_version_id, steps=steps, carried=carried)
    params.update(human_params)
    sql = _LABEL_SCORE_SQL.format(human=human)
    coverage_sql = _LABEL_COVERAGE_SQL.format(human=human)
    if work_mem and connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = %s", [work_mem])
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            cursor.execute(coverage_sql, params)
            item_rows = cursor.fetchall()
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            cursor.execute(coverage_sql, params)
            item_rows = cursor.fetchall()
    coverage: dict[str, list[int]] = {}
    for key, index_sum, raters, count in item_rows:
        if key not in steps:
            continue
        totals = coverage.setdefault(key, [0, 0, 0])
        totals[0] += count
        totals[1] += count if raters >= 2 else 0
        # A continuous scale has no splits.
        split = steps[key] and agreement_human_value(int(index_sum), int(raters)) is None
        totals[2] += count if split else 0
    pairs: dict[tuple[str, str], dict[tuple[float, float], int]] = {}
    missing: dict[tuple[str, str], list[int]] = {}
    for fingerprint, key, score, index_sum, raters, mean_value, count in rows:
        if key not in steps:
            continue
        n_steps = steps[key]
        group = (fingerprint, key)
        tally = missing.setdefault(group, [0, 0, 0])
        if score is None:
            tally[0] += count
            continue
        if not math.isfinite(score):
            tally[1] += count
            continue
        human_at = item_human_value(steps=n_steps, index_sum=index_sum, raters=raters, mean_value=mean_value)
        if human_at is None:
            tally[2] += count
        else:
            judge = judge_on_scale(score, n_steps)
            cell = pairs.setdefault(group, {})
            cell[(judge, float(human_at))] = cell.get((judge, float(human_at)), 0) + count
    result: dict[tuple[str, str], PairCells] = {}
    for group, (failed, non_finite, undecided) in missing.items():
        cells = sorted(pairs.get(group, {}).items())
        result[group] = PairCells(
            np.array([c[0][0] for c in cells], dtype=float), np.array([c[0][1] for c in cells], dtype=float),
            np.array([c[1] for c in cells], dtype=float), failed, non_finite, undecided,
        )
    return result, {key: LabelCoverage(*totals) for key, totals in coverage.items()}


def reviews_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "labels": HumanLabel.objects.filter(rollout__project=project).count(),
        "pairwise_labels": PairwiseLabel.objects.filter(rubric_version__rubric__project=project).count(),
    }


@dataclass(frozen=True)
class PairwiseLabelCount:
    version: Any  # RubricVersion
    labels: int


def pairwise_label_counts(project: Project) -> list[PairwiseLabelCount]:
    """Rubric versions with pairwise labels (preferences between two rollouts), newest first, with their counts:
    what the agreement page names when there are no criterion labels to compare with the judge."""
    from webapp.rubrics.models import RubricVersion

    counts = dict(
        PairwiseLabel.objects.filter(rubric_version__rubric__project=project)
        .values_list("rubric_version_id").annotate(n=Count("id")).values_list("rubric_version_id", "n")
    )
    versions = RubricVersion.objects.filter(pk__in=counts).select_related("rubric").order_by("-id")
    return [PairwiseLabelCount(v, counts[v.pk]) for v in versions]


def previous_item_id(queue: ReviewQueue, user: Any, assignment: ReviewAssignment | None) -> int | None:
    """The item `user` labeled in `queue` before this one (the `p` key of the labeling page): the latest done
    turn finished before this one when this one is done too, else the latest done turn; None when there is none."""
    done = ReviewAssignment.objects.filter(item__queue=queue, annotator=user, status=AssignmentStatus.DONE,
                                           finished_at__isnull=False)
    if assignment is not None:
        done = done.exclude(pk=assignment.pk)
        if assignment.status == AssignmentStatus.DONE and assignment.finished_at is not None:
            done = done.filter(finished_at__lt=assignment.finished_at)
    return done.order_by("-finished_at", "-id").values_list("item_id", flat=True).first()

def rollout_filter_labels(
    rollouts: QuerySet[Rollout], filters: Mapping[str, Any], meaning: RolloutFilterMeaning
) -> QuerySet[Rollout]:
    """The rollout filter's `labeled` clause (yes / no: has a human label; under `rubric_version` where
    `meaning.labels_under_version` and a version is given), registered in apps.py. On rollouts blind for the caller
    (`meaning.hidden_scores`) only the caller's own labels count: the others' are hidden from them, so the filter
    must not tell whether someone else labeled a blind rollout."""
    if not filters.get("labeled"):
        return rollouts
    labels = HumanLabel.objects.filter(rollout=OuterRef("pk"))
    if meaning.labels_under_version and filters.get("rubric_version"):
        labels = labels.filter(rubric_version_id=filters["rubric_version"])
    if meaning.hidden_scores is not None:
        labels = labels.exclude(Q(rollout_id__in=meaning.hidden_scores) & ~Q(annotator_id=meaning.viewer))
    has_labels = Exists(labels)
    return rollouts.filter(has_labels if filters["labeled"] == "yes" else ~has_labels)


def rollout_labels(rollout: Rollout) -> list[HumanLabel]:
    """Every human label of the rollout (all rubric versions and annotators), newest version first."""
    return list(
        HumanLabel.objects.filter(rollout=rollout).select_related("rubric_version__rubric", "annotator", "queue")
        .order_by("-rubric_version_id", "criterion_key", "annotator__username")
    )


def position_check_latest(version: RubricVersion) -> PositionCheckJob | None:
    """The version's newest position-swap check, for the bias page. One whose worker was killed stays
    pending/running; past RUBRICON_TOOL_JOB_TIMEOUT_S it is failed, so the page stops polling and says why."""
    job = PositionCheckJob.objects.filter(rubric_version=version).select_related("endpoint").order_by("-id").first()
    if job is None:
        return None
    timeout_s = settings.RUBRICON_TOOL_JOB_TIMEOUT_S
    job_expire_if_stale(job, timeout_s=timeout_s, error=f"No result after {timeout_s / 60:g} minutes: the worker "
                                                       "running this check stopped or no worker serves the judge "
                                                       "queue. Try again.")
    return job
