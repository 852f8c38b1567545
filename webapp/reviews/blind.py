"""Blind review: which judge scores a user may not see yet. Every read path asks here (docs/blind-review.md).

The rule is per (user, rollout). A rollout is *blind* for a user while

- the user's role in the project is annotator (editors and owners write rubrics and run judges: they can always
  score a rollout themselves, so hiding stored scores from them protects nothing), and
- an item of a blind queue of the project holds the rollout (as its rollout, as rollout B in pairwise mode, or as one
  of the group a ranking item shows) and is still open to that user: the queue names no assignees or names them,
  they have not submitted the item, and it still needs labels or they hold a reservation on it.

Submitting the item ends blindness for that queue (the labeling page then reveals the judge's scores); a rollout in
two open blind queues stays blind until both are done. While a rollout is blind for a user, it looks unscored to
them everywhere: its scores are left out of lists, score and agreement filters never match it, rewards in its
metadata are removed, and pages that show scores of many rollouts at once (agreement, bias, align, judge job and
run pages, exports) are refused while the user has any blind rollout in the project. Other people's labels of it
(criterion labels, rankings, gold responses) are hidden from them too: they would sway the label as much as the
judge's scores would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import BigIntegerField, F, Func, Q, QuerySet
from django.db.models.functions import Cast

from webapp.core.errors import ApplicationError
from webapp.core.models import Project, Role
from webapp.reviews.models import AssignmentStatus, ReviewAssignment, ReviewItem, ReviewQueue
from webapp.rollouts.models import Rollout

REFUSED = ("Judge scores are hidden while you have items to label in a blind review queue of this project; "
           "this page shows them. Finish your blind items first, or ask an editor.")


def blind_rollout_ids(*, user: Any, role: str | None, project: Project | int) -> QuerySet[Rollout]:
    """Ids of the rollouts blind for `user` in `project`, as a subquery (`.exclude(rollout_id__in=...)`)."""
    if role != Role.ANNOTATOR or not getattr(user, "pk", None):
        return Rollout.objects.none().values("pk")
    project_id = project if isinstance(project, int) else project.pk
    may_work = Q(queue__assignees=None) | Q(queue__in=ReviewQueue.assignees.through.objects.filter(
        user_id=user.pk).values("reviewqueue_id"))
    submitted = ReviewAssignment.objects.filter(annotator_id=user.pk, status=AssignmentStatus.DONE).values("item_id")
    reserved = ReviewAssignment.objects.filter(annotator_id=user.pk, status=AssignmentStatus.RESERVED).values("item_id")
    still_open = Q(completed_count__lt=F("queue__reviewers_per_item")) | Q(pk__in=reserved)
    items = (ReviewItem.objects.filter(queue__project_id=project_id, queue__blind=True).filter(may_work)
             .filter(still_open).exclude(pk__in=submitted))
    # A ranking item shows its whole group: every member is held by it (one row per member, from the JSON array).
    members = items.annotate(
        member=Cast(Func(F("group_rollout_ids"), function="jsonb_array_elements_text"), BigIntegerField())
    ).values("member")
    return Rollout.objects.filter(
        Q(pk__in=items.values("rollout_id")) | Q(pk__in=items.exclude(rollout_b=None).values("rollout_b_id"))
        | Q(pk__in=members)
    ).values("pk")


@dataclass
class Blindness:
    """What one user may not see in one project; `active` (any blind rollout at all) is asked once per request."""

    rollout_ids: QuerySet
    project_id: int | None = None
    _active: bool | None = field(default=None, repr=False)
    _ids: frozenset[int] | None = field(default=None, repr=False)

    @property
    def active(self) -> bool:
        if self._active is None:
            self._active = not self.rollout_ids.query.is_empty() and self.rollout_ids.exists()
        return self._active

    def ids(self) -> frozenset[int]:
        """The blind rollout ids as a set (bounded by the size of the user's open queues)."""
        if self._ids is None:
            self._ids = frozenset(self.rollout_ids.values_list("pk", flat=True)) if self.active else frozenset()
        return self._ids

    def hides(self, rollout_id: int) -> bool:
        return self.active and rollout_id in self.ids()

    def without_scores_of(self, queryset: QuerySet, *, rollout_field: str = "rollout_id") -> QuerySet:
        """Score rows (or rollouts, `rollout_field="pk"`) minus those of blind rollouts."""
        if not self.active:
            return queryset
        return queryset.exclude(**{f"{rollout_field}__in": self.rollout_ids})

    def without_others_labels(self, queryset: QuerySet, *, user: Any, rollout_field: str | None = "rollout_id",
                              item_field: str | None = None) -> QuerySet:
        """Human rows (criterion labels, gold responses; rankings by `item_field`) minus other annotators' rows about
        blind rollouts: a row about a rollout, or about a review item showing one (a ranking item's group)."""
        if not self.active:
            return queryset
        about = Q(**{f"{rollout_field}__in": self.rollout_ids}) if rollout_field else Q(pk__in=[])
        if item_field:
            about |= Q(**{f"{item_field}__in": _items_showing(self.project_id, self.ids())})
        return queryset.exclude(about & ~Q(annotator_id=getattr(user, "pk", None)))

    def check_scores_page(self) -> None:
        """Refuse a page that shows judge scores or rewards of many rollouts at once."""
        if self.active:
            raise ApplicationError(REFUSED, status=403)


def blindness_for(*, user: Any, role: str | None, project: Project | int) -> Blindness:
    project_id = project if isinstance(project, int) else project.pk
    return Blindness(blind_rollout_ids(user=user, role=role, project=project_id), project_id)


def request_blindness(request: Any) -> Blindness:
    """The blindness of the request's user in `request.project` (set by `project_view` / the API permission),
    computed once per request."""
    cached = getattr(request, "_blindness", None)
    if cached is None:
        cached = blindness_for(user=request.user, role=getattr(request, "project_role", None),
                               project=request.project)
        request._blindness = cached
    return cached


_SCORE_KEY = re.compile(r"reward|score|judge|rationale|grade", re.IGNORECASE)


def redact_metadata(metadata: Any) -> Any:
    """A rollout's metadata without the rewards and scores a run or an import stored in it (any key naming a
    reward, score, judge, rationale or grade, at any depth)."""
    if isinstance(metadata, dict):
        return {k: redact_metadata(v) for k, v in metadata.items() if not _SCORE_KEY.search(str(k))}
    if isinstance(metadata, list):
        return [redact_metadata(v) for v in metadata]
    return metadata


def judge_scores_visible(*, user: Any, role: str | None, rollout: Rollout | int, queue: ReviewQueue | None = None,
                         submitted: bool = False) -> bool:
    """May `user` see judge scores of `rollout` now?

    On a labeling page (`queue` given) a blind queue hides them from whoever labels until that item is submitted,
    whatever their role (`submitted=True` when the caller already read the done assignment). Everywhere, an
    annotator also waits until no other open blind queue holds the rollout.
    """
    rollout_id = rollout if isinstance(rollout, int) else rollout.pk
    if queue is not None and queue.blind and not submitted and not _submitted_in_queue(user, queue.pk, rollout_id):
        return False
    if role != Role.ANNOTATOR:
        return True
    project_id = queue.project_id if queue is not None else (
        rollout.project_id if isinstance(rollout, Rollout)
        else Rollout.objects.filter(pk=rollout_id).values_list("project_id", flat=True).first())
    if project_id is None or not getattr(user, "pk", None):
        return False
    return not _blind_for(user.pk, project_id, rollout_id)


# The labeling page asks the two questions below on every request. Composed with the ORM they cost ~3.5 ms of CPU
# each (issue 20: most of the page's own cost); written out, ~0.3 ms. Same rule as blind_rollout_ids, for one rollout
# (tests/webapp/reviews/test_blind.py compares the two).

def _tables() -> dict[str, str]:
    from django.db import connection

    q = connection.ops.quote_name
    return {"a": q(ReviewAssignment._meta.db_table), "i": q(ReviewItem._meta.db_table),
            "q": q(ReviewQueue._meta.db_table), "qa": q(ReviewQueue.assignees.through._meta.db_table)}


# Item `i` holds rollout %s: as its rollout, rollout B, or a member of its ranking group (a JSON array of ids).
_HOLDS = "(i.rollout_id = %s OR i.rollout_b_id = %s OR i.group_rollout_ids @> to_jsonb(%s::bigint))"


def _exists(sql: str, params: list[Any]) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS ({sql})", params)
        return bool(cursor.fetchone()[0])


def _items_showing(project_id: int | None, rollout_ids: frozenset[int]) -> list[int]:
    """Ids of the project's review items showing any of the rollouts (as rollout, rollout B or group member)."""
    from django.db import connection

    t = _tables()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i.id FROM {t['i']} i JOIN {t['q']} q ON q.id = i.queue_id WHERE q.project_id = %s AND"
            f" (i.rollout_id = ANY(%s) OR i.rollout_b_id = ANY(%s) OR EXISTS (SELECT 1 FROM"
            f" jsonb_array_elements_text(i.group_rollout_ids) m WHERE m::bigint = ANY(%s)))",
            [project_id, *[sorted(rollout_ids)] * 3],
        )
        return [row[0] for row in cursor.fetchall()]


def _submitted_in_queue(user: Any, queue_id: int, rollout_id: int) -> bool:
    """Has `user` a done assignment on an item of the queue holding the rollout (as rollout, rollout B or a member of
    its ranking group)?"""
    t = _tables()
    return _exists(
        f"SELECT 1 FROM {t['a']} a JOIN {t['i']} i ON i.id = a.item_id WHERE i.queue_id = %s AND a.annotator_id = %s"
        f" AND a.status = %s AND {_HOLDS}",
        [queue_id, getattr(user, "pk", None), AssignmentStatus.DONE.value, rollout_id, rollout_id, rollout_id],
    )


def _blind_for(user_id: int, project_id: int, rollout_id: int) -> bool:
    """Is the rollout in blind_rollout_ids(user, annotator, project)?"""
    t = _tables()
    return _exists(
        f"SELECT 1 FROM {t['i']} i JOIN {t['q']} q ON q.id = i.queue_id"
        f" WHERE q.project_id = %s AND q.blind = %s AND {_HOLDS}"
        f" AND (NOT EXISTS (SELECT 1 FROM {t['qa']} qa WHERE qa.reviewqueue_id = q.id)"
        f"      OR EXISTS (SELECT 1 FROM {t['qa']} qa WHERE qa.reviewqueue_id = q.id AND qa.user_id = %s))"
        f" AND (i.completed_count < q.reviewers_per_item"
        f"      OR EXISTS (SELECT 1 FROM {t['a']} a WHERE a.item_id = i.id AND a.annotator_id = %s AND a.status = %s))"
        f" AND NOT EXISTS (SELECT 1 FROM {t['a']} a WHERE a.item_id = i.id AND a.annotator_id = %s AND a.status = %s)",
        [project_id, True, rollout_id, rollout_id, rollout_id, user_id, user_id, AssignmentStatus.RESERVED.value, user_id,
         AssignmentStatus.DONE.value],
    )
