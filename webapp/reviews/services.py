"""Review queues, reservations and human labels.

Handing out work: `item_next` locks one open item with SELECT ... FOR UPDATE SKIP LOCKED and records a reservation
(`ReviewAssignment`) that expires, so two annotators asking at once get different items and an abandoned tab frees
its seat after `reservation_minutes`.

Labels use optimistic locking (`webapp.core.locking.row_version_update`, as tasks and endpoints do): every write names
the `row_version` it read (0 = "I saw no label"). A stale write is refused with ConflictError (HTTP 409) carrying the
current label; nothing is overwritten silently. The labeling page's autosaves (one criterion; the comment and flag,
which every label of the item carries) go through the same check.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from training.rubrics.types import message_text
from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.locking import row_version_update
from webapp.core.models import Project
from webapp.judging.models import RolloutScore
from webapp.reviews import sampling
from webapp.reviews.criteria import form_criteria, form_criterion
from webapp.reviews.models import (
    AssignmentStatus,
    HumanLabel,
    PairwiseJudgment,
    PairwiseLabel,
    Preference,
    ReviewAssignment,
    ReviewItem,
    ReviewMode,
    ReviewQueue,
    SamplingStrategy,
)
from webapp.reviews.selectors import queue_totals_key
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.rollouts.selectors import rollout_browse
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.selectors import rubric_versions_of_project

MAX_QUEUE_SIZE = 5000
MAX_NEXT_TRIES = 20
LABEL_FIELDS = ("choice", "value", "comment", "reward_hacking")
LABEL_STATE_FIELDS = ("id", "criterion_key", *LABEL_FIELDS)


# --- queues ----------------------------------------------------------------------------------------------------------


@transaction.atomic
def review_queue_create(
    *, project: Project, name: str, rubric_version: RubricVersion, selection: dict[str, Any] | None = None,
    strategy: str = SamplingStrategy.RANDOM, mode: str = ReviewMode.CRITERIA, size: int = 50, seed: int = 0,
    reviewers_per_item: int = 1, blind: bool = True, reservation_minutes: int = 30, assignees: list[Any] | None = None,
    created_by: Any = None, guidelines: str | None = None,
) -> ReviewQueue:
    """Sample `size` rollouts of the selection with `strategy` and freeze them, in order, as the queue's items."""
    if rubric_version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", field="rubric_version")
    if not name.strip():
        raise ApplicationError("A queue needs a name.", field="name")
    if not 1 <= size <= MAX_QUEUE_SIZE:
        raise ApplicationError(f"A queue holds 1 to {MAX_QUEUE_SIZE} items; got {size}.", field="size")
    if not 1 <= reviewers_per_item <= 10:
        raise ApplicationError("Reviewers per item is between 1 and 10.", field="reviewers_per_item")
    if reservation_minutes < 1:
        raise ApplicationError("A reservation lasts at least one minute.", field="reservation_minutes")
    if strategy not in SamplingStrategy.values:
        raise ApplicationError(f"Unknown sampling strategy {strategy!r}.", field="strategy")
    if mode not in ReviewMode.values:
        raise ApplicationError(f"Unknown mode {mode!r}.", field="mode")
    if assignees and any(not project.memberships.filter(user=u).exists() for u in assignees):
        raise ApplicationError("Every assignee must be a member of the project.", field="assignees")
    selection = {k: v for k, v in (selection or {}).items() if v not in (None, "", False)}
    if strategy == SamplingStrategy.EXTREMES:
        selection.setdefault("source", RolloutSource.TRAINING)
    follow = None
    if strategy == SamplingStrategy.FOLLOW_RUN:
        follow = _run_to_follow(project, selection, mode)
        selection = {"run": follow.pk, "source": RolloutSource.TRAINING}
    # Failed rollouts have nothing to label.
    candidates = rollout_browse(project, filters=selection).filter(error="")
    per_step, last_step = 0, 0
    if follow is not None:
        per_step = follow_per_step(cap=size, max_steps=follow.config.get("max_steps"))
        picked, last_step = sampling.follow_run(candidates=candidates, version=rubric_version, after_step=0,
                                                per_step=per_step, budget=size, seed=seed)
    else:
        picked = sampling.sample(
            strategy=strategy, candidates=candidates, rubric_version=rubric_version, size=size, seed=seed
        )
    rng = random.Random(seed)
    partners: dict[int, int] = {}
    groups: dict[int, list[int]] = {}
    if mode == ReviewMode.PAIRWISE:
        partners = sampling.pair_partner(project_id=project.pk, rollout_ids=[r for r, _ in picked], rng=rng)
        picked = [(r, p) for r, p in picked if r in partners]
    elif mode == ReviewMode.RANKING:  # one item per group: its rollouts, to rank best to worst
        groups = dict(sampling.ranking_groups(project_id=project.pk, rollout_ids=[r for r, _ in picked]))
        picked = [(r, p) for r, p in picked if r in groups]
    if not picked and follow is None:  # a queue following a run may start empty: the run's rollouts come later
        hint = " with two or more samples per prompt" if mode in (ReviewMode.PAIRWISE, ReviewMode.RANKING) else ""
        raise ApplicationError(f"No rollouts{hint} match this selection and strategy; widen the filters.")
    queue = ReviewQueue.objects.create(
        project=project, name=name.strip(), rubric_version=rubric_version, selection=selection, strategy=strategy,
        mode=mode, reviewers_per_item=reviewers_per_item, blind=blind, reservation_minutes=reservation_minutes,
        seed=seed, created_by=created_by, follow_run=follow, follow_cap=size if follow is not None else None,
        follow_per_step=per_step, followed_step=last_step,
    )
    # Guidelines follow the rubric: a new queue starts from the newest ones written for any of its versions.
    inherited, written_for = guidelines_inherited(rubric_version) if guidelines is None else (guidelines, None)
    if inherited:
        queue.guidelines, queue.guidelines_rubric_version = inherited, written_for or rubric_version
        queue.guidelines_updated_at, queue.guidelines_updated_by = timezone.now(), created_by
        queue.save(update_fields=["guidelines", "guidelines_rubric_version", "guidelines_updated_at",
                                  "guidelines_updated_by"])
    if assignees:
        queue.assignees.set(assignees)
    ReviewItem.objects.bulk_create(
        ReviewItem(
            queue=queue, position=i, rollout_id=rollout_id, rollout_b_id=partners.get(rollout_id),
            shown_a_first=rng.random() < 0.5 if mode == ReviewMode.PAIRWISE else True, priority=priority,
            group_rollout_ids=groups.get(rollout_id, []),
        )
        for i, (rollout_id, priority) in enumerate(picked, start=1)
    )
    transaction.on_commit(_item_statistics_refresh)
    return queue


def follow_per_step(*, cap: int, max_steps: Any) -> int:
    """Rollouts a following queue takes from each step: the cap spread over the run's planned steps (at least 1)."""
    try:
        steps = int(max_steps)
    except (TypeError, ValueError):
        steps = 0
    return max(1, math.ceil(cap / steps)) if steps > 0 else 1


def _run_to_follow(project: Project, selection: dict[str, Any], mode: str) -> Any:
    # runs sits above reviews in the app order: the run model is reached through the queue's relation to it.
    TrainingRun: Any = ReviewQueue._meta.get_field("follow_run").related_model  # noqa: N806

    if mode != ReviewMode.CRITERIA:
        raise ApplicationError("A queue following a run labels criteria; pairwise mode is not available.",
                               field="mode")
    run_id = str(selection.get("run") or "")
    run = TrainingRun.objects.filter(pk=int(run_id), project=project).first() if run_id.isdigit() else None
    if run is None:
        raise ApplicationError("Pick the training run the queue follows.", field="run")
    return run


def review_queue_for_run(
    *, run: Any, name: str = "", size: int = 50, reviewers_per_item: int = 1, blind: bool = True, seed: int = 0,
    created_by: Any = None,
) -> ReviewQueue:
    """"Send to review" on a run page: a blind queue of the run's rubric version that follows the run."""
    return review_queue_create(
        project=run.project, name=name.strip() or f"Run #{run.pk} {run.name} · training rollouts",
        rubric_version=run.rubric_version, selection={"run": run.pk}, strategy=SamplingStrategy.FOLLOW_RUN,
        size=size, reviewers_per_item=reviewers_per_item, blind=blind, seed=seed, created_by=created_by,
    )


def review_queues_follow_run(*, run_id: int) -> int:
    """Sample the training rollouts of steps a following queue has not seen yet into it, up to its cap. Called by
    the run's monitor after each ingest (and once when the run ends); cheap when nothing is new. Returns the
    number of items added."""
    added = 0
    for queue_id in ReviewQueue.objects.filter(follow_run_id=run_id).values_list("pk", flat=True):
        added += _queue_follow(queue_id=queue_id, run_id=run_id)
    return added


@transaction.atomic
def _queue_follow(*, queue_id: int, run_id: int) -> int:
    queue = ReviewQueue.objects.select_for_update().select_related("rubric_version").get(pk=queue_id)
    count = queue.items.count()
    budget = (queue.follow_cap or 0) - count
    new = Rollout.objects.filter(run_id=run_id, source=RolloutSource.TRAINING, error="", step__gt=queue.followed_step)
    if budget <= 0 or not new.exists():
        return 0
    picked, last_step = sampling.follow_run(
        candidates=Rollout.objects.filter(run_id=run_id, source=RolloutSource.TRAINING, error=""),
        version=queue.rubric_version, after_step=queue.followed_step, per_step=max(1, queue.follow_per_step),
        budget=budget, seed=queue.seed,
    )
    start = (queue.items.aggregate(top=Max("position"))["top"] or 0) + 1
    ReviewItem.objects.bulk_create(
        ReviewItem(queue=queue, position=start + i, rollout_id=rollout_id, priority=priority)
        for i, (rollout_id, priority) in enumerate(picked)
    )
    ReviewQueue.objects.filter(pk=queue.pk).update(followed_step=last_step)
    return len(picked)


def guidelines_inherited(rubric_version: RubricVersion) -> tuple[str, RubricVersion | None]:
    """The newest guidelines written for this rubric (any of its versions): a new queue starts from them."""
    queue = (ReviewQueue.objects.filter(rubric_version__rubric_id=rubric_version.rubric_id)
             .exclude(guidelines="").select_related("guidelines_rubric_version")
             .order_by("-guidelines_updated_at", "-id").first())
    if queue is None:
        return "", None
    return queue.guidelines, queue.guidelines_rubric_version or queue.rubric_version


def _item_statistics_refresh() -> None:
    """Refresh the planner's statistics of review items once a queue's items are in.

    `item_next` should walk the queue in position order and stop at the first open item. Until autovacuum analyzes
    the table, the statistics do not know the new queue's items: the planner then expects a handful of open items,
    reads all of them, computes every one's taken seats and sorts (5 ms at 3,000 items instead of 0.04 ms, and
    annotators usually start right after a queue is created)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ReviewItem._meta.db_table}")


def _check_may_work(queue: ReviewQueue, annotator: Any) -> None:
    # Read once per queue object: a submit checks it again when it reserves the next item in the same request.
    # `selectors.queue_get` already answered whether the queue names assignees (most queues are an open pool).
    assignees = queue.__dict__.get("_assignee_ids")
    if assignees is None:
        named = getattr(queue, "has_assignees", True)
        assignees = set(queue.assignees.values_list("pk", flat=True)) if named else set()
        queue.__dict__["_assignee_ids"] = assignees
    if assignees and annotator.pk not in assignees:
        raise ApplicationError("This queue is assigned to named annotators only.", status=403)


# `item_next` in SQL: it runs on every submit, and composing these statements with the ORM cost ~4 ms of CPU per call
# (the web process's largest single cost under load) against ~0.4 ms for the same statements written out. The
# placeholders and clauses work on Postgres and on SQLite (embedded mode, which has no row locks to take).
_ITEM = ReviewItem._meta.db_table
_ASSIGNMENT = ReviewAssignment._meta.db_table
# A seat is held by a done turn or by a reservation that has not expired.
_SEAT = "(t.status = %(done)s OR (t.status = %(reserved)s AND t.reserved_until > %(now)s))"
_MY_RESERVATION = f"""
    SELECT a.id AS assignment_id, i.*
    FROM {_ASSIGNMENT} a JOIN {_ITEM} i ON i.id = a.item_id
    WHERE i.queue_id = %(queue)s AND a.annotator_id = %(annotator)s
      AND a.status = %(reserved)s AND a.reserved_until > %(now)s
    ORDER BY i.position
    LIMIT 1
"""
_OPEN_ITEM = f"""
    SELECT i.* FROM {_ITEM} i
    WHERE i.queue_id = %(queue)s AND i.completed_count < %(seats)s{{not_tried}}
      AND NOT EXISTS (
          SELECT 1 FROM {_ASSIGNMENT} f
          WHERE f.item_id = i.id AND f.annotator_id = %(annotator)s AND f.status IN (%(done)s, %(skipped)s))
      AND (SELECT COUNT(*) FROM {_ASSIGNMENT} t WHERE t.item_id = i.id AND {_SEAT}) < %(seats)s
    ORDER BY i.position
    LIMIT 1{{lock}}
"""
# A new statement, so it sees every reservation committed since the search above read its snapshot; the item's row
# lock serializes the writers of its reservations. An expired reservation of this annotator is renewed in place.
_RESERVE = f"""
    INSERT INTO {_ASSIGNMENT} (item_id, annotator_id, status, reserved_until, finished_at, created_at)
    SELECT %(item)s, %(annotator)s, %(reserved)s, %(until)s, NULL, %(now)s
    WHERE (SELECT COUNT(*) FROM {_ASSIGNMENT} t
           WHERE t.item_id = %(item)s AND t.annotator_id <> %(annotator)s AND {_SEAT}) < %(seats)s
    ON CONFLICT (item_id, annotator_id) DO UPDATE
        SET status = excluded.status, reserved_until = excluded.reserved_until, finished_at = NULL
    RETURNING id
"""


@transaction.atomic
def item_next(*, queue: ReviewQueue, annotator: Any) -> ReviewItem | None:
    """The item this annotator should label now: their live reservation, else the first open item, reserved."""
    _check_may_work(queue, annotator)
    now = timezone.now()
    ops = connection.ops
    params: dict[str, Any] = {
        "queue": queue.pk, "annotator": annotator.pk, "seats": queue.reviewers_per_item,
        "now": ops.adapt_datetimefield_value(now),
        "until": ops.adapt_datetimefield_value(now + timedelta(minutes=queue.reservation_minutes)),
        "done": AssignmentStatus.DONE.value, "reserved": AssignmentStatus.RESERVED.value,
        "skipped": AssignmentStatus.SKIPPED.value,
    }
    mine = next(iter(ReviewItem.objects.raw(_MY_RESERVATION, params)), None)
    with connection.cursor() as cursor:
        if mine is not None:
            cursor.execute(f"UPDATE {_ASSIGNMENT} SET reserved_until = %(until)s WHERE id = %(assignment)s",
                           {**params, "assignment": mine.assignment_id})  # type: ignore[attr-defined]  # a column of the raw query
            return mine
        skip_locked = " FOR UPDATE OF i SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        wait = " FOR UPDATE OF i" if connection.features.has_select_for_update_of else ""
        tried: list[int] = []
        for _ in range(MAX_NEXT_TRIES):
            not_tried = ""
            if tried:
                not_tried = " AND i.id NOT IN ({})".format(", ".join(f"%(tried{n})s" for n in range(len(tried))))
                params.update({f"tried{n}": pk for n, pk in enumerate(tried)})
            item = next(iter(ReviewItem.objects.raw(_OPEN_ITEM.format(not_tried=not_tried, lock=skip_locked), params)), None)
            if item is None and skip_locked:
                # Everything open is being handed to someone else this instant; with several reviewers per item a
                # seat may remain, so wait for the first such item rather than say "nothing left".
                item = next(iter(ReviewItem.objects.raw(_OPEN_ITEM.format(not_tried=not_tried, lock=wait), params)), None)
            if item is None:
                return None
            cursor.execute(_RESERVE, {**params, "item": item.pk})
            if cursor.fetchone() is not None:
                return item
            tried.append(item.pk)  # its seats filled up between the search and the lock
    return None


def _assignment_finish(*, item: ReviewItem, annotator: Any, status: str) -> bool:
    """Close this annotator's turn on the item; True when it newly counts as done."""
    now = timezone.now()
    # One conditional UPDATE in the usual case (the annotator holds a reservation): it locks the row, and a
    # concurrent finish of the same turn re-reads `status` after the lock and updates nothing.
    closed = ReviewAssignment.objects.filter(item=item, annotator=annotator).exclude(
        status=AssignmentStatus.DONE).update(status=status, finished_at=now)
    if not closed:
        assignment, created = ReviewAssignment.objects.get_or_create(
            item=item, annotator=annotator,
            defaults={"status": status, "reserved_until": now, "finished_at": now},
        )
        if not created:
            return False  # already done
    if status == AssignmentStatus.DONE:
        ReviewItem.objects.filter(pk=item.pk).update(completed_count=F("completed_count") + 1)
        # The labeling page's header caches the queue's totals for a few seconds: the page after a submit must
        # count this label (issue 19 item 5), so the count is dropped once the label is committed.
        key = queue_totals_key(item.queue_id)
        transaction.on_commit(lambda: cache.delete(key))
        return True
    return False


@transaction.atomic
def item_skip(*, item: ReviewItem, annotator: Any) -> None:
    _assignment_finish(item=item, annotator=annotator, status=AssignmentStatus.SKIPPED)


# --- criterion labels ------------------------------------------------------------------------------------------------


def label_state(label: HumanLabel) -> dict[str, Any]:
    """What a 409 shows: the label as it is now."""
    return {"row_version": label.row_version, **{name: getattr(label, name) for name in LABEL_STATE_FIELDS}}


def _label_version_update(label: HumanLabel, *, row_version: int, values: dict[str, Any]) -> None:
    """Write `values` only if the label still has `row_version`; otherwise ConflictError (409) with label_state."""
    row_version_update(
        instance=label, row_version=row_version, values={**values, "updated_at": timezone.now()},
        shown_fields=LABEL_STATE_FIELDS, noun="label",
        duplicate_name_message="This label already exists.",  # labels have no name: the update cannot clash
    )


def _check_value(value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ApplicationError("A label value is between 0 and 1.", field="value")


# No savepoint of its own: callers write several labels all or nothing, and a refusal aborts them anyway.
@transaction.atomic(savepoint=False)
def label_save(
    *, annotator: Any, rollout_id: int, rubric_version: RubricVersion, criterion_key: str, row_version: int,
    choice: str = "", value: float | None = None, queue: ReviewQueue | None = None,
    comment: str | None = None, reward_hacking: bool | None = None,
) -> HumanLabel:
    """Create (row_version 0) or update (row_version = the version read) this annotator's label of one criterion.

    A stale row_version raises ConflictError with the current label, unless the label already holds exactly
    what is being written (a double submit loses nothing, so it is not a conflict).
    """
    _check_value(value)
    changes: dict[str, Any] = {"choice": choice, "value": value}
    if comment is not None:
        changes["comment"] = comment
    if reward_hacking is not None:
        changes["reward_hacking"] = reward_hacking
    key = {"rollout_id": rollout_id, "rubric_version": rubric_version, "criterion_key": criterion_key, "annotator": annotator}
    if row_version == 0:
        try:
            with transaction.atomic():
                return HumanLabel.objects.create(**key, queue=queue, **changes)
        except IntegrityError:
            saved = HumanLabel.objects.get(**key)
            if _holds(saved, changes):
                return saved
            raise ConflictError(
                "You already labeled this criterion in another tab or session; here is the saved value.",
                current=label_state(saved),
            ) from None
    current = HumanLabel.objects.filter(**key).first()
    if current is None:
        raise ApplicationError("That label no longer exists.", status=404)
    try:
        _label_version_update(current, row_version=row_version, values=changes)
    except ConflictError:
        current.refresh_from_db()
        if not _holds(current, changes):
            raise
    return current


def _holds(label: HumanLabel, changes: dict[str, Any]) -> bool:
    return all(getattr(label, name) == wanted for name, wanted in changes.items())


@transaction.atomic
def label_create(
    *, project: Project, annotator: Any, rollout_id: int, rubric_version_id: int, criterion_key: str,
    choice: str = "", value: float | None = None, comment: str = "", reward_hacking: bool = False,
) -> HumanLabel:
    """API entry: a first label (row_version 0) of one criterion, checked against the project and the rubric."""
    rollout = Rollout.objects.filter(project=project, pk=rollout_id).first()
    if rollout is None:
        raise ApplicationError("No such rollout in this project.", field="rollout")
    version = rubric_versions_of_project(project).filter(pk=rubric_version_id).first()
    if version is None:
        raise ApplicationError("No such rubric version in this project.", field="rubric_version")
    form_criterion(version, criterion_key)
    return label_save(
        annotator=annotator, rollout_id=rollout.pk, rubric_version=version, criterion_key=criterion_key, row_version=0,
        choice=choice, value=value, comment=comment, reward_hacking=reward_hacking,
    )


@transaction.atomic
def label_update(*, label: HumanLabel, annotator: Any, row_version: int, **changes: Any) -> HumanLabel:
    """API entry: change a label only if nobody changed it since `row_version` was read; otherwise 409 + current."""
    if label.annotator_id != annotator.pk:
        raise ApplicationError("Only the annotator who wrote a label can change it.", status=403)
    unknown = set(changes) - set(LABEL_FIELDS)
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "value" in changes:
        _check_value(changes["value"])
    _label_version_update(label, row_version=row_version, values=changes)
    return HumanLabel.objects.select_related("annotator").get(pk=label.pk)


@transaction.atomic
def item_label_save(
    *, item: ReviewItem, annotator: Any, criterion_key: str, row_version: int, choice: str = "",
    number: float | None = None, comment: str | None = None, reward_hacking: bool | None = None,
) -> HumanLabel:
    """Autosave of one criterion on the labeling page (the choice maps to the judge's 0..1 value).

    `comment` / `reward_hacking` (None = leave as is) ride along, so a note typed before the first answer is saved
    with that answer."""
    queue = item.queue
    _check_may_work(queue, annotator)
    criterion = form_criterion(queue.rubric_version, criterion_key)
    choice, value = criterion.value_for(choice=choice, number=number)
    return label_save(
        annotator=annotator, rollout_id=item.rollout_id, rubric_version=queue.rubric_version, criterion_key=criterion_key,
        row_version=row_version, choice=choice, value=value, queue=queue, comment=comment,
        reward_hacking=reward_hacking,
    )


@transaction.atomic
def item_note_save(
    *, item: ReviewItem, annotator: Any, comment: str, reward_hacking: bool, row_versions: dict[str, int]
) -> list[HumanLabel]:
    """Autosave of the labeling page's comment and reward-hacking flag, which every label of the item carries.

    `row_versions`: criterion key → the row version the page holds. All or nothing: if any label changed since
    (another tab, a late request), ConflictError (409) with that label's current state and nothing is written,
    unless the label already holds this comment and flag. Criteria without a label yet are left alone: their first
    answer carries the note (`item_label_save`).
    """
    queue = item.queue
    _check_may_work(queue, annotator)
    values = {"comment": comment, "reward_hacking": reward_hacking}
    labels = list(
        HumanLabel.objects.filter(
            rollout_id=item.rollout_id, rubric_version_id=queue.rubric_version_id, annotator=annotator
        ).order_by("criterion_key")  # one lock order for every writer of these rows
    )
    for label in labels:
        if not _holds(label, values):
            _label_version_update(label, row_version=row_versions.get(label.criterion_key, 0), values=values)
    return labels


@transaction.atomic
def item_submit(
    *, item: ReviewItem, annotator: Any, answers: dict[str, dict[str, Any]], comment: str = "",
    reward_hacking: bool = False,
) -> list[HumanLabel]:
    """Save every criterion of one item and close the annotator's turn on it, all or nothing.

    `answers`: criterion key → {"row_version": int, "choice": str} or {"row_version": int, "number": float}.
    """
    queue = item.queue
    _check_may_work(queue, annotator)
    criteria = form_criteria(queue.rubric_version)
    missing = [c.title for c in criteria if not (answers.get(c.key, {}).get("choice") or answers.get(c.key, {}).get("number") is not None)]
    if missing:
        raise ApplicationError(f"Answer every criterion before submitting (missing: {', '.join(missing)}), or skip the item.")
    values: dict[str, tuple[str, float | None]] = {
        c.key: c.value_for(choice=answers[c.key].get("choice") or "", number=answers[c.key].get("number"))
        for c in criteria
    }
    labels = _labels_create_all(item=item, annotator=annotator, answers=answers, values=values, comment=comment,
                                reward_hacking=reward_hacking)
    if labels is not None:
        _assignment_finish(item=item, annotator=annotator, status=AssignmentStatus.DONE)
        return labels
    labels = []
    for criterion in criteria:
        answer = answers[criterion.key]
        choice, value = values[criterion.key]
        labels.append(label_save(
            annotator=annotator, rollout_id=item.rollout_id, rubric_version=queue.rubric_version,
            criterion_key=criterion.key, row_version=int(answer.get("row_version") or 0), choice=choice, value=value,
            queue=queue, comment=comment, reward_hacking=reward_hacking,
        ))
    _assignment_finish(item=item, annotator=annotator, status=AssignmentStatus.DONE)
    return labels


def _labels_create_all(
    *, item: ReviewItem, annotator: Any, answers: dict[str, dict[str, Any]], values: dict[str, tuple[str, float | None]],
    comment: str, reward_hacking: bool,
) -> list[HumanLabel] | None:
    """The usual submit, every criterion new (row version 0), as one INSERT; None when that does not apply or a
    label exists already (another tab, a double submit), for `label_save` to sort out one criterion at a time."""
    if any(int(answers[key].get("row_version") or 0) for key in values):
        return None
    queue = item.queue
    labels = [
        HumanLabel(rollout_id=item.rollout_id, rubric_version_id=queue.rubric_version_id, criterion_key=key,
                   annotator=annotator, queue=queue, choice=choice, value=value, comment=comment,
                   reward_hacking=reward_hacking)
        for key, (choice, value) in values.items()
    ]
    for label in labels:
        _check_value(label.value)
    try:
        with transaction.atomic():
            return HumanLabel.objects.bulk_create(labels)
    except IntegrityError:
        return None


# --- pairwise --------------------------------------------------------------------------------------------------------


@transaction.atomic
def pairwise_submit(
    *, item: ReviewItem, annotator: Any, preferred: str, row_version: int = 0, comment: str = ""
) -> PairwiseLabel:
    """A / B / tie between the item's two rollouts. `preferred` names rollout_a / rollout_b (not screen sides);
    the display order the annotator saw is recorded with it."""
    queue = item.queue
    _check_may_work(queue, annotator)
    if queue.mode != ReviewMode.PAIRWISE or item.rollout_b_id is None:
        raise ApplicationError("This item is not a pairwise comparison.")
    if preferred not in Preference.values:
        raise ApplicationError("Choose A, B or tie.", field="preferred")
    key = {"rollout_a_id": item.rollout_id, "rollout_b_id": item.rollout_b_id, "rubric_version": queue.rubric_version,
           "criterion_key": "", "annotator": annotator}
    changes = {"preferred": preferred, "comment": comment, "shown_a_first": item.shown_a_first}
    label: PairwiseLabel | None
    if row_version == 0:
        try:
            with transaction.atomic():
                label = PairwiseLabel.objects.create(**key, queue=queue, **changes)
        except IntegrityError:
            label = PairwiseLabel.objects.get(**key)
            if label.preferred != preferred:
                raise ConflictError(
                    "You already compared these two; here is the saved answer.",
                    current={"preferred": label.preferred, "row_version": label.row_version},
                ) from None
    else:
        label = PairwiseLabel.objects.filter(**key).first()
        if label is None:
            raise ApplicationError("That comparison no longer exists.", status=404)
        try:
            row_version_update(
                instance=label, row_version=row_version, values={**changes, "updated_at": timezone.now()},
                shown_fields=("preferred",), noun="comparison",
                duplicate_name_message="This comparison already exists.",  # no name field: cannot clash
            )
        except ConflictError:
            label.refresh_from_db()
            if label.preferred != preferred:
                raise
    _assignment_finish(item=item, annotator=annotator, status=AssignmentStatus.DONE)
    return label


# --- align loop ------------------------------------------------------------------------------------------------------


@transaction.atomic
def labeled_set_rejudge(
    *, project: Project, labels: RubricVersion, rubric_version: RubricVersion, endpoint: Any = None,
    created_by: Any = None,
) -> Any:
    """A judge job over exactly the rollouts humans labeled under `labels`, scored with `rubric_version`."""
    from webapp.judging.services import judge_job_create

    ids = list(
        HumanLabel.objects.filter(rubric_version=labels, rollout__project=project)
        .values_list("rollout_id", flat=True).distinct().order_by("rollout_id")
    )
    if not ids:
        raise ApplicationError(f"Nobody has labeled rollouts under {labels} yet.")
    # `labeled` narrows the job even where the rollout selection does not know `ids` yet.
    return judge_job_create(
        project=project, rubric_version=rubric_version, endpoint=endpoint,
        selection={"labeled": "yes", "ids": ids}, created_by=created_by,
    )


# --- judge position-swap check ---------------------------------------------------------------------------------------

POSITION_CHECK_MAX_PAIRS = 200


def _stored_fingerprint(fingerprint: str) -> str:
    if len(fingerprint) <= 128:
        return fingerprint
    return f"{fingerprint[:86]}|{hashlib.sha1(fingerprint.encode()).hexdigest()}"


def _prompt_text(rollout: Rollout) -> str:
    messages = rollout.prompt_messages or []
    if messages:
        return "\n\n".join(f"{m.get('role', 'user')}: {message_text(m.get('content'))}" for m in messages if isinstance(m, dict))
    return rollout.example.prompt if rollout.example else ""


def _pairwise_question(rubric_version: RubricVersion) -> str:
    """The whole rubric as one comparison: criterion titles and descriptions (questions are per-rollout templates)."""
    lines = [f"- {c.title}{': ' + c.description if c.description else ''}" for c in form_criteria(rubric_version)]
    return "Which response is better overall, judged by these criteria?\n" + "\n".join(lines)


def position_check_pairs(*, rubric_version: RubricVersion, fingerprint: str, limit: int, seed: int = 0) -> list[tuple[Rollout, Rollout]]:
    """Up to `limit` pairs (x, y) of rollouts of one prompt (same group), both scored under the version, that this
    judge has not compared yet; which one is x is random (seeded)."""
    done = set(
        PairwiseJudgment.objects.filter(rubric_version=rubric_version, judge_fingerprint=_stored_fingerprint(fingerprint))
        .values_list("rollout_x_id", "rollout_y_id")
    )
    scored = RolloutScore.objects.filter(rubric_version=rubric_version).values("rollout_id")
    rollouts = (
        Rollout.objects.filter(pk__in=scored, error="").exclude(group_key="").select_related("example")
        .order_by("group_key", "pk")[: (limit + len(done)) * 4]
    )
    rng = random.Random(seed)
    pairs: list[tuple[Rollout, Rollout]] = []
    previous: Rollout | None = None
    for rollout in rollouts:
        if previous is not None and previous.group_key == rollout.group_key:
            x, y = (previous, rollout) if rng.random() < 0.5 else (rollout, previous)
            if (x.pk, y.pk) not in done and (y.pk, x.pk) not in done:
                pairs.append((x, y))
                previous = None
                if len(pairs) >= limit:
                    break
                continue
        previous = rollout
    return pairs


def position_check_run(
    *, rubric_version: RubricVersion, endpoint: Any, pairs: int = 20, seed: int = 0
) -> list[PairwiseJudgment]:
    """Ask the endpoint's judge to compare `pairs` pairs of rollouts in both orders and store the verdicts.

    Runs in a worker (HTTP calls, no transaction open while waiting); a failed call is stored with its error.
    """
    from asgiref.sync import async_to_sync

    from training.judges.pairwise import PairwiseItem, judge_pairs_swapped, pairwise_fingerprint
    from webapp.judging.judges import judge_for_endpoint

    if endpoint.project_id != rubric_version.rubric.project_id:
        raise ApplicationError("That endpoint belongs to another project.", field="endpoint")
    if not 1 <= pairs <= POSITION_CHECK_MAX_PAIRS:
        raise ApplicationError(f"Compare 1 to {POSITION_CHECK_MAX_PAIRS} pairs; got {pairs}.", field="pairs")
    judge = judge_for_endpoint(endpoint)
    fingerprint = pairwise_fingerprint(judge.fingerprint)
    chosen = position_check_pairs(rubric_version=rubric_version, fingerprint=fingerprint, limit=pairs, seed=seed)
    if not chosen:
        raise ApplicationError("No two scored rollouts of one prompt are left for this judge to compare: generate "
                               "several samples per prompt and judge them first.")
    question = _pairwise_question(rubric_version)
    items = [
        PairwiseItem(key=f"{x.pk}:{y.pk}", prompt=_prompt_text(x), x=x.completion, y=y.completion, question=question,
                     reference=(x.example.answer or None) if x.example else None)
        for x, y in chosen
    ]
    results = async_to_sync(judge_pairs_swapped)(judge, items, concurrency=max(1, min(8, endpoint.max_concurrency or 8)))
    rows = [
        PairwiseJudgment(
            rubric_version=rubric_version, rollout_x=x, rollout_y=y, judge_fingerprint=_stored_fingerprint(fingerprint),
            judge_model=endpoint.model[:200], verdict_first=r.first or "", verdict_swapped=r.swapped or "",
            raw_first=r.raw_first, raw_swapped=r.raw_swapped, error=r.error[:4000], prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
        )
        for (x, y), r in zip(chosen, results, strict=True)
    ]
    PairwiseJudgment.objects.bulk_create(rows, ignore_conflicts=True)  # a redelivered task writes nothing twice
    return rows


def position_check_enqueue(*, rubric_version: RubricVersion, endpoint: Any, pairs: int) -> None:
    """Validate, then run the check in a worker after this request's transaction commits."""
    if endpoint is None or endpoint.project_id != rubric_version.rubric.project_id:
        raise ApplicationError("Choose a judge endpoint of this project.", field="endpoint")
    if not 1 <= pairs <= POSITION_CHECK_MAX_PAIRS:
        raise ApplicationError(f"Compare 1 to {POSITION_CHECK_MAX_PAIRS} pairs; got {pairs}.", field="pairs")
    from webapp.core.jobs import job_enqueue

    job_enqueue("workers.judging.position_check", rubric_version_id=rubric_version.pk, endpoint_id=endpoint.pk,
                pairs=pairs)
