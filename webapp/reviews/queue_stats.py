"""Per-annotator progress and agreement on a queue's page: labels done per annotator (named assignees listed
before they start), each annotator's agreement with the judge and the agreement between annotators, computed with
the statistics of webapp/reviews/agreement.py (no new statistics here)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from webapp.judging.models import CriterionScore
from webapp.reviews import agreement
from webapp.reviews.criteria import form_criteria
from webapp.reviews.models import HumanLabel, ReviewMode, ReviewQueue
from webapp.reviews.selectors import AnnotatorProgress, QueueProgress


@dataclass(frozen=True)
class AnnotatorRow:
    username: str
    done: int
    skipped: int
    reserved: int
    assigned: bool
    with_judge: agreement.Stat | None  # exact agreement with the judge, every criterion on its own scale


@dataclass(frozen=True)
class CriterionRaters:
    title: str
    alpha: agreement.Stat
    level: str


@dataclass(frozen=True)
class QueueAnnotators:
    rows: list[AnnotatorRow]
    between: list[CriterionRaters]
    items: int


def queue_annotators(queue: ReviewQueue, progress: QueueProgress, *, with_scores: bool) -> QueueAnnotators:
    """The annotators of a queue with their progress and (criteria mode, `with_scores`) their agreement with the judge
    and between them: three queries (assignees, labels, judge scores). Without `with_scores` (a caller with blind
    items) neither: Krippendorff's α is a statistic of other annotators' labels, which blind review hides too."""
    assignees = list(queue.assignees.values_list("username", flat=True).order_by("username"))
    by_name: dict[str, AnnotatorProgress] = {a.username: a for a in progress.annotators}
    names = [*by_name, *[u for u in assignees if u not in by_name]]
    agreements: dict[str, agreement.Stat] = {}
    between: list[CriterionRaters] = []
    if queue.mode == ReviewMode.CRITERIA and with_scores:
        agreements, between = _agreement(queue)
    rows = []
    for name in names:
        seen = by_name.get(name)
        done, skipped, reserved = (seen.done, seen.skipped, seen.reserved) if seen else (0, 0, 0)
        rows.append(AnnotatorRow(name, done, skipped, reserved, assigned=name in assignees,
                                 with_judge=agreements.get(name)))
    return QueueAnnotators(rows, between, progress.items)


def _agreement(queue: ReviewQueue) -> tuple[dict[str, agreement.Stat], list[CriterionRaters]]:
    criteria = {c.key: c for c in form_criteria(queue.rubric_version)}
    items = queue.items.values("rollout_id")
    labels: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)  # (key, rollout) -> annotator -> value
    for username, key, rollout_id, value in (
        HumanLabel.objects.filter(rubric_version_id=queue.rubric_version_id, rollout_id__in=items,
                                  value__isnull=False)
        .values_list("annotator__username", "criterion_key", "rollout_id", "value")
    ):
        if key in criteria and value is not None and math.isfinite(value):
            labels[(key, rollout_id)][username] = value

    def on_scale(key: str, value: float) -> float:
        steps = criteria[key].steps
        return float(min(max(round(value * steps), 0), steps)) if steps else value

    annotators = sorted({u for values in labels.values() for u in values})
    with_judge: dict[str, agreement.Stat] = {}
    if labels:
        # One judge per criterion: the fingerprint that scored most of the queue's rollouts.
        scores: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
        counts: Counter[tuple[str, str]] = Counter()
        for key, fingerprint, rollout_id, score in (
            CriterionScore.objects.filter(rubric_version_id=queue.rubric_version_id, rollout_id__in=items,
                                          score__isnull=False)
            .values_list("criterion_key", "judge_fingerprint", "rollout_id", "score")
        ):
            if key in criteria and score is not None and math.isfinite(score):
                scores[(key, rollout_id)][fingerprint] = score
                counts[(key, fingerprint)] += 1
        judge_of: dict[str, str] = {}
        for (key, fingerprint), _count in sorted(counts.items(), key=lambda kv: -kv[1]):
            judge_of.setdefault(key, fingerprint)
        for username in annotators:
            pairs = [(on_scale(key, scores[(key, r)][judge_of[key]]), on_scale(key, values[username]))
                     for (key, r), values in labels.items()
                     if username in values and key in judge_of and judge_of[key] in scores.get((key, r), {})]
            with_judge[username] = agreement.percent_agreement(
                np.array([j for j, _ in pairs], dtype=float), np.array([h for _, h in pairs], dtype=float))
    between = []
    if len(annotators) >= 2:
        row_of = {u: i for i, u in enumerate(annotators)}
        for key, criterion in criteria.items():
            cells = {r: values for (k, r), values in labels.items() if k == key}
            if not cells:
                continue
            table = np.full((len(annotators), len(cells)), np.nan)
            for column, values in enumerate(cells.values()):
                for username, value in values.items():
                    table[row_of[username], column] = on_scale(key, value)
            level: agreement.AlphaLevel = "ordinal" if criterion.stat_kind == "ordinal" else "interval"
            between.append(CriterionRaters(criterion.title, agreement.krippendorff_alpha(table, level=level), level))
    return with_judge, between
