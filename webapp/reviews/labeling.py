"""What annotators expect of a labeling tool beyond criteria and pairs (issue 19, Build): guidelines per queue
(markdown, following the rubric), a corrected "gold" response written while labeling (SFT data), and ranking the
responses of a group best to worst (every pair the ranking implies is a preference)."""

from __future__ import annotations

from collections import defaultdict
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
from webapp.rollouts.models import Rollout
from webapp.rubrics.models import RubricVersion

MAX_GUIDELINES = 50_000
MAX_GOLD = 100_000
MAX_RANKED = 8  # a group larger than this is ranked on its first MAX_RANKED rollouts


# --- guidelines ------------------------------------------------------------------------------------------------------


def guidelines_inherited(rubric_version: RubricVersion) -> tuple[str, RubricVersion | None]:
    """The newest guidelines written for this rubric (any of its versions): a new queue starts from them."""
    queue = (ReviewQueue.objects.filter(rubric_version__rubric_id=rubric_version.rubric_id)
             .exclude(guidelines="").select_related("guidelines_rubric_version")
             .order_by("-guidelines_updated_at", "-id").first())
    if queue is None:
        return "", None
    return queue.guidelines, queue.guidelines_rubric_version or queue.rubric_version


@transaction.atomic
def guidelines_save(*, queue: ReviewQueue, text: str, user: Any) -> ReviewQueue:
    """Replace the queue's guidelines; they are marked as written for the queue's rubric version."""
    text = text.replace("\r\n", "\n").strip()
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
    text = text.replace("\r\n", "\n")
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
                return GoldResponse.objects.create(**key, queue=item.queue, text=text)
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


def ranking_groups(*, project_id: int, rollout_ids: list[int]) -> list[tuple[int, list[int]]]:
    """For a ranking queue: one item per group among the picked rollouts, in the order picked, holding up to
    MAX_RANKED rollouts of the group (the picked one first); groups of one rollout have nothing to rank."""
    groups = dict(Rollout.objects.filter(pk__in=rollout_ids).values_list("pk", "group_key"))
    members: dict[str, list[int]] = defaultdict(list)
    for rollout_id, key in (Rollout.objects.filter(project_id=project_id, group_key__in=set(groups.values()), error="")
                            .order_by("sample_index", "pk").values_list("pk", "group_key")):
        members[key].append(rollout_id)
    seen: set[str] = set()
    result = []
    for rollout_id in rollout_ids:
        key = groups.get(rollout_id)
        if key is None or key in seen or len(members[key]) < 2:
            continue
        seen.add(key)
        others = [r for r in members[key] if r != rollout_id]
        result.append((rollout_id, [rollout_id, *others][:MAX_RANKED]))
    return result


def ranking_pairs(ranking: list[int]) -> list[tuple[int, int]]:
    """(chosen, rejected) for every pair a ranking (best first) implies: n·(n−1)/2 pairs."""
    return [(better, worse) for i, better in enumerate(ranking) for worse in ranking[i + 1:]]


@transaction.atomic
def ranking_submit(*, item: ReviewItem, annotator: Any, ranking: list[int], row_version: int = 0,
                   comment: str = "") -> RankingLabel:
    """Store the annotator's ranking of the item's group (every rollout once, best first) and close their turn."""
    from webapp.reviews.services import _assignment_finish, _check_may_work

    queue = item.queue
    _check_may_work(queue, annotator)
    if queue.mode != ReviewMode.RANKING or not item.group_rollout_ids:
        raise ApplicationError("This item is not a ranking.")
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
