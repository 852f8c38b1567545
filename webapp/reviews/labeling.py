"""What annotators expect of a labeling tool beyond criteria and pairs (issue 19, Build): guidelines per queue
(markdown, following the rubric), a corrected "gold" response written while labeling (SFT data), and ranking the
responses of a group best to worst (every pair the ranking implies is a preference)."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.locking import row_version_update
from webapp.reviews.models import (
    AssignmentStatus,
    GoldResponse,
    RankingLabel,
    ReviewItem,
    ReviewMode,
    ReviewQueue,
)
from webapp.reviews.selectors import item_reserved
from webapp.reviews.services import _assignment_finish, _check_may_work

MAX_GUIDELINES = 50_000
MAX_GOLD = 100_000


def _storable(text: str, field: str) -> str:
    """The text as Postgres can store it, or a clear refusal (NUL characters, lone surrogates)."""
    if "\x00" in text:
        raise ApplicationError("The text contains a NUL character (\\u0000), which cannot be stored.", field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApplicationError("The text contains an invalid character (a lone surrogate), which cannot be stored.",
                               field=field) from None
    return text


def item_held(*, queue: ReviewQueue, item_id: int, annotator: Any) -> ReviewItem:
    """The item, if the annotator holds a turn on it (reserved, or already done): gold responses and rankings are
    written while labeling it, from the page or the API alike."""
    item, assignment = item_reserved(queue, item_id, annotator, rollout=False)
    if assignment is None:
        raise ApplicationError("This item is not reserved for you; take the next one from the queue.", status=403)
    return item


def _check_own(row: Any, annotator: Any, noun: str) -> None:
    if row.annotator_id != annotator.pk:
        raise ApplicationError(f"Only the annotator who wrote a {noun} can change it.", status=403)


# --- guidelines ------------------------------------------------------------------------------------------------------


@transaction.atomic
def guidelines_save(*, queue: ReviewQueue, text: str, user: Any) -> ReviewQueue:
    """Replace the queue's guidelines; they are marked as written for the queue's rubric version."""
    text = _storable(text.replace("\r\n", "\n").strip(), "guidelines")
    if len(text) > MAX_GUIDELINES:
        raise ApplicationError(f"Guidelines hold at most {MAX_GUIDELINES:,} characters; got {len(text):,}.",
                               field="guidelines")
    ReviewQueue.objects.filter(pk=queue.pk).update(
        guidelines=text, guidelines_rubric_version=queue.rubric_version_id, guidelines_updated_at=timezone.now(),
        guidelines_updated_by=user)
    queue.refresh_from_db(fields=["guidelines", "guidelines_rubric_version", "guidelines_updated_at",
                                  "guidelines_updated_by"])
    return queue


# --- gold responses --------------------------------------------------------------------------------------------------


@transaction.atomic
def gold_save(*, item: ReviewItem, rollout_id: int, annotator: Any, text: str, row_version: int) -> GoldResponse | None:
    """Create (row_version 0), update or (empty text) delete this annotator's corrected response for one rollout of
    the item. A stale row_version is refused with ConflictError (409) carrying the saved text."""
    if rollout_id not in item_rollout_ids(item):
        raise ApplicationError("That rollout is not part of this item.", status=404)
    return _gold_write(rollout_id=rollout_id, queue=item.queue, annotator=annotator, text=text,
                       row_version=row_version)


@transaction.atomic
def gold_update(*, gold: GoldResponse, annotator: Any, text: str, row_version: int) -> GoldResponse | None:
    """API entry: change (or, with an empty text, delete) one's own gold response if nobody changed it since
    `row_version` was read; otherwise ConflictError (409) with the saved text."""
    _check_own(gold, annotator, "gold response")
    return _gold_write(rollout_id=gold.rollout_id, queue=gold.queue, annotator=annotator, text=text,
                       row_version=row_version)


def _gold_write(*, rollout_id: int, queue: ReviewQueue | None, annotator: Any, text: str,
                row_version: int) -> GoldResponse | None:
    text = _storable(text.replace("\r\n", "\n"), "gold")
    if len(text) > MAX_GOLD:
        raise ApplicationError(f"A gold response holds at most {MAX_GOLD:,} characters.", field="gold")
    key = {"rollout_id": rollout_id, "annotator": annotator}
    current = GoldResponse.objects.filter(**key).first()
    if current is None:
        if row_version:
            raise ConflictError("Your gold response was deleted elsewhere since you loaded the page.",
                                current={"text": "", "row_version": 0})
        if not text.strip():
            return None
        try:
            with transaction.atomic():
                return GoldResponse.objects.create(**key, queue=queue, text=text)
        except IntegrityError:
            current = GoldResponse.objects.get(**key)
            if current.text == text:
                return current
            raise ConflictError("You already wrote a gold response for this rollout in another tab; here it is.",
                                current={"text": current.text, "row_version": current.row_version}) from None
    if current.text == text:
        return current
    if not text.strip():
        if row_version != current.row_version:
            raise ConflictError("Your gold response changed elsewhere since you loaded the page.",
                                current={"text": current.text, "row_version": current.row_version})
        current.delete()
        return None
    row_version_update(instance=current, row_version=row_version, values={"text": text, "updated_at": timezone.now()},
                       shown_fields=("text",), noun="gold response",
                       duplicate_name_message="This gold response already exists.")
    return GoldResponse.objects.get(pk=current.pk)


def item_rollout_ids(item: ReviewItem) -> list[int]:
    """Every rollout an item shows: its rollout, rollout B (pairwise) or its group (ranking)."""
    ids = [item.rollout_id, *([item.rollout_b_id] if item.rollout_b_id else []), *(item.group_rollout_ids or [])]
    return list(dict.fromkeys(ids))


# --- ranking ---------------------------------------------------------------------------------------------------------


def ranking_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """(chosen, rejected) for every pair a ranking (best first) implies: n·(n−1)/2 pairs."""
    return [(better, worse) for i, better in enumerate(ranking) for worse in ranking[i + 1:]]


@transaction.atomic
def ranking_submit(*, item: ReviewItem, annotator: Any, ranking: list[int], row_version: int = 0,
                   comment: str = "") -> RankingLabel:
    """Store the annotator's ranking of the item's group (every rollout once, best first) and close their turn."""
    queue = item.queue
    _check_may_work(queue, annotator)
    comment = _storable(comment, "comment")
    if queue.mode != ReviewMode.RANKING or not item.group_rollout_ids:
        raise ApplicationError("This item is not a ranking.", field="item")
    expected = set(item.group_rollout_ids)
    if len(ranking) != len(expected) or set(ranking) != expected:
        raise ApplicationError(f"Rank every response of the group once ({len(expected)} responses).", field="ranking")
    key = {"item": item, "annotator": annotator}
    current = RankingLabel.objects.filter(**key).first()
    if current is None:
        try:
            with transaction.atomic():
                label = RankingLabel.objects.create(**key, rubric_version=queue.rubric_version, queue=queue,
                                                    ranking=ranking, comment=comment)
        except IntegrityError:
            label = RankingLabel.objects.get(**key)
            if label.ranking != ranking:
                raise ConflictError("You already ranked this group in another tab; here is the saved ranking.",
                                    current={"ranking": label.ranking, "row_version": label.row_version}) from None
    elif current.ranking == ranking and current.comment == comment:
        label = current
    else:
        row_version_update(instance=current, row_version=row_version,
                           values={"ranking": ranking, "comment": comment, "updated_at": timezone.now()},
                           shown_fields=("ranking",), noun="ranking",
                           duplicate_name_message="This ranking already exists.")
        label = RankingLabel.objects.get(pk=current.pk)
    _assignment_finish(item=item, annotator=annotator, status=AssignmentStatus.DONE)
    return label


@transaction.atomic
def ranking_update(*, label: RankingLabel, annotator: Any, ranking: list[int], row_version: int,
                   comment: str = "") -> RankingLabel:
    """API entry: change one's own ranking if nobody changed it since `row_version` was read; otherwise 409."""
    _check_own(label, annotator, "ranking")
    return ranking_submit(item=label.item, annotator=annotator, ranking=ranking, row_version=row_version,
                          comment=comment)
