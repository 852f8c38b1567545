from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.judging.models import CriterionScore
from webapp.reviews.blind import blind_rollout_ids, judge_scores_visible  # noqa: F401 (one rule, re-exported)
from webapp.reviews.models import (
    AssignmentStatus,
    HumanLabel,
    PairwiseLabel,
    ReviewAssignment,
    ReviewItem,
    ReviewQueue,
)
from webapp.rollouts.models import Rollout


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


def queue_totals_cached(queue: ReviewQueue) -> QueueProgress:
    """`queue_totals` for the labeling page's header, recomputed at most every few seconds: the aggregate reads every
    item of the queue, and dozens of annotators load a page each second. The queue page (`queue_progress`) is exact."""
    key = f"reviews:queue-totals:{queue.pk}"
    totals = cache.get(key)
    if totals is None:
        totals = queue_totals(queue)
        cache.set(key, totals, QUEUE_TOTALS_SECONDS)
    return totals


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
        for score in CriterionScore.objects.filter(rollout_id__in=rollout_ids, rubric_version_id=version_id).order_by(
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
    ).order_by("criterion_key", "judge_fingerprint"):
        result.setdefault(score.criterion_key, []).append(score)
    return result


def rollout_full(rollout_id: int) -> Rollout:
    return Rollout.objects.select_related("task", "example").get(pk=rollout_id)


# --- judge scores paired with human labels ---------------------------------------------------------------------------

# One row per (judge, criterion, judge score, human value) with its count: the labels of `label_version` against the
# scores of `score_version`. An item's human value is the mean of its labels. With `pool` the judges' scores of an
# item are averaged first and the judge column is ''. The label aggregate and the join's sort fit in work_mem instead
# of spilling to disk (~25 % faster at 1M scores).
_LABEL_SCORE_SQL = """
    WITH human AS (
        SELECT rollout_id, criterion_key, AVG(value) AS value
        FROM reviews_humanlabel
        WHERE rubric_version_id = %(label_version)s AND value IS NOT NULL
        GROUP BY rollout_id, criterion_key
    )
    {select}
"""
_PER_JUDGE = """
    SELECT s.judge_fingerprint, s.criterion_key, s.score, h.value, COUNT(*)
    FROM human h
    JOIN judging_criterionscore s
      ON s.rollout_id = h.rollout_id AND s.criterion_key = h.criterion_key
     AND s.rubric_version_id = %(score_version)s
    WHERE s.score IS NOT NULL{excluded}
    GROUP BY 1, 2, 3, 4
"""
_POOLED = """
    SELECT '', criterion_key, judge, human, COUNT(*)
    FROM (
        SELECT s.criterion_key, AVG(s.score) AS judge, h.value AS human
        FROM human h
        JOIN judging_criterionscore s
          ON s.rollout_id = h.rollout_id AND s.criterion_key = h.criterion_key
         AND s.rubric_version_id = %(score_version)s
        WHERE s.score IS NOT NULL{excluded}
        GROUP BY s.rollout_id, s.criterion_key, h.value
    ) items
    GROUP BY 2, 3, 4
"""


@dataclass(frozen=True)
class PairCells:
    """Distinct (judge score, human value) pairs of one judge × criterion and how many items share each."""

    judge: np.ndarray
    human: np.ndarray
    counts: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def label_score_cells(
    *, label_version_id: int, score_version_id: int | None = None, pool_judges: bool = False,
    exclude_fingerprints: tuple[str, ...] = (), work_mem: str | None = "64MB",
) -> dict[tuple[str, str], PairCells]:
    """Judge scores paired with human labels, aggregated in SQL: (judge fingerprint, criterion key) → cells.

    The agreement dashboard reads one judge at a time; the training launcher's calibration gate pools the judges
    (`pool_judges`, fingerprint '') and leaves out scores that are not a judge's opinion. Either way Postgres returns
    a few hundred rows, whether 1,000 or 1,000,000 scores stand behind them. `work_mem=None` keeps it to a single
    statement (no transaction around a SET LOCAL) where the data set is small.
    """
    params: dict[str, Any] = {"label_version": label_version_id, "score_version": score_version_id or label_version_id}
    excluded = ""
    if exclude_fingerprints:
        # Plain placeholders rather than `= ANY(array)`: the embedded mode runs on SQLite.
        params.update({f"excluded{i}": fp for i, fp in enumerate(exclude_fingerprints)})
        excluded = " AND s.judge_fingerprint NOT IN ({})".format(
            ", ".join(f"%(excluded{i})s" for i in range(len(exclude_fingerprints))))
    sql = _LABEL_SCORE_SQL.format(select=(_POOLED if pool_judges else _PER_JUDGE).format(excluded=excluded))
    if work_mem and connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = %s", [work_mem])
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    else:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
    grouped: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for fingerprint, key, score, human, n in rows:
        grouped.setdefault((fingerprint, key), []).append((score, human, n))
    return {
        group: PairCells(
            np.array([c[0] for c in cells], dtype=float), np.array([c[1] for c in cells], dtype=float),
            np.array([c[2] for c in cells], dtype=float),
        )
        for group, cells in grouped.items()
    }


def reviews_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "labels": HumanLabel.objects.filter(rollout__project=project).count(),
    }
