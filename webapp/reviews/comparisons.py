"""A pairwise label opened from the side-by-side comparison page: one pairwise queue per rubric version collects
the pairs people chose to label there, and each pair is one item of it, created the first time and reused after."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.reviews.models import AssignmentStatus, ReviewAssignment, ReviewItem, ReviewMode, ReviewQueue
from webapp.rollouts.models import Rollout
from webapp.rubrics.models import RubricVersion

# Marks the queue in its selection (shown on the queue page as "side by side: yes").
SIDE_BY_SIDE = "side_by_side"


def comparison_queue_name(version: RubricVersion) -> str:
    return f"Side by side · {version.rubric.name} v{version.number}"


@transaction.atomic
def comparison_item_open(*, project: Project, rubric_version: RubricVersion, rollout_a: Rollout, rollout_b: Rollout,
                         annotator: Any) -> ReviewItem:
    """The pairwise item of (rollout_a, rollout_b) in the project's side-by-side queue of `rubric_version`, created
    when missing (in either order), reserved for `annotator` so the labeling page opens on it.

    The queue is not blind: whoever opens a pair from the comparison page has seen both scores already."""
    if rubric_version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", status=404)
    if rollout_a.project_id != project.pk or rollout_b.project_id != project.pk:
        raise ApplicationError("Those rollouts belong to another project.", status=404)
    if rollout_a.pk == rollout_b.pk:
        raise ApplicationError("A pairwise label compares two different rollouts.")
    queue = (ReviewQueue.objects.select_for_update()
             .filter(project=project, rubric_version=rubric_version, mode=ReviewMode.PAIRWISE,
                     **{f"selection__{SIDE_BY_SIDE}": True})
             .order_by("pk").first())
    if queue is None:
        queue = ReviewQueue.objects.create(
            project=project, name=comparison_queue_name(rubric_version), rubric_version=rubric_version,
            selection={SIDE_BY_SIDE: True}, mode=ReviewMode.PAIRWISE, blind=False, reviewers_per_item=1,
            created_by=annotator,
        )
        queue = ReviewQueue.objects.select_for_update().get(pk=queue.pk)
    pair = (Q(rollout_id=rollout_a.pk, rollout_b_id=rollout_b.pk)
            | Q(rollout_id=rollout_b.pk, rollout_b_id=rollout_a.pk))
    item = ReviewItem.objects.filter(pair, queue=queue).order_by("pk").first()
    if item is None:
        position = (ReviewItem.objects.filter(queue=queue).aggregate(m=Max("position"))["m"] or 0) + 1
        item = ReviewItem.objects.create(queue=queue, position=position, rollout=rollout_a, rollout_b=rollout_b,
                                         shown_a_first=(rollout_a.pk + rollout_b.pk) % 2 == 0)
    until = timezone.now() + timedelta(minutes=queue.reservation_minutes)
    assignment, created = ReviewAssignment.objects.get_or_create(
        item=item, annotator=annotator, defaults={"status": AssignmentStatus.RESERVED, "reserved_until": until})
    if not created and assignment.status != AssignmentStatus.DONE:
        ReviewAssignment.objects.filter(pk=assignment.pk).update(status=AssignmentStatus.RESERVED,
                                                                 reserved_until=until, finished_at=None)
    item.queue = queue
    return item


def comparison_return(value: str | None, project: Project) -> str | None:
    """Where a pairwise label opened from the comparison page goes back to: that page (with its sides, sort and
    filters), never anywhere else."""
    from django.urls import reverse

    prefix = reverse("compare:view", args=[project.pk])
    if not value or not value.startswith(prefix) or "\\" in value or "//" in value or len(value) > 2000:
        return None
    return value
