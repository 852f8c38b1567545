"""Which rollouts a review queue shows, in which order. Every strategy is seeded, so a queue can be rebuilt exactly.

Each sampler takes the candidate rollouts (the rollout browser's filters applied) and returns (rollout id, priority)
in display order. Scores are read in SQL aggregates, never row by row.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
from django.db.models import Avg, Count, Max, Min, QuerySet, StdDev

from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.agreement import percent_agreement
from webapp.reviews.criteria import form_criteria
from webapp.reviews.dashboard import carried_label_versions, criterion_steps
from webapp.reviews.models import SamplingStrategy
from webapp.reviews.selectors import label_score_cells
from webapp.rollouts.models import Rollout
from webapp.rubrics.models import RubricVersion

STRATA = 5
# Disagreement-first weighs a criterion by how badly judge and humans agree on it so far; a criterion without
# labels yet counts as fully uncertain.
UNKNOWN_AGREEMENT = 0.0

Picked = list[tuple[int, float | None]]


def sample(
    *, strategy: str, candidates: QuerySet[Rollout], rubric_version: RubricVersion, size: int, seed: int
) -> Picked:
    rng = random.Random(seed)
    if strategy == SamplingStrategy.RANDOM:
        return _random(candidates, size, rng)
    if strategy == SamplingStrategy.STRATIFIED:
        return _stratified(candidates, rubric_version, size, rng)
    if strategy == SamplingStrategy.DISAGREEMENT:
        return _disagreement(candidates, rubric_version, size, rng)
    if strategy == SamplingStrategy.ZERO_VARIANCE:
        return _zero_variance(candidates, rubric_version, size, rng)
    if strategy == SamplingStrategy.EXTREMES:
        return _extremes(candidates, rubric_version, size)
    raise ValueError(f"Unknown strategy {strategy!r}.")


def _ids(candidates: QuerySet[Rollout]) -> list[int]:
    return list(candidates.order_by("pk").values_list("pk", flat=True))


def _random(candidates: QuerySet[Rollout], size: int, rng: random.Random) -> Picked:
    ids = _ids(candidates)
    return [(i, None) for i in rng.sample(ids, min(size, len(ids)))]


def _totals(candidates: QuerySet[Rollout], version: RubricVersion) -> dict[int, float]:
    """Mean weighted total per rollout over the judges that scored it under this version."""
    rows = (
        RolloutScore.objects.filter(rubric_version=version, rollout__in=candidates.order_by().values("pk"), total__isnull=False)
        .values("rollout_id").annotate(mean=Avg("total")).values_list("rollout_id", "mean")
    )
    return dict(rows)


def _stratified(candidates: QuerySet[Rollout], version: RubricVersion, size: int, rng: random.Random) -> Picked:
    """Equal shares from each fifth of the judge-score range, so rare low (or high) scores get looked at."""
    strata: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for rollout_id, total in sorted(_totals(candidates, version).items()):
        strata[min(int(total * STRATA), STRATA - 1)].append((rollout_id, total))
    for members in strata.values():
        rng.shuffle(members)
    picked: Picked = []
    # Round robin over strata: a stratum with too few rollouts leaves its share to the others.
    while len(picked) < size and any(strata.values()):
        for b in sorted(strata):
            if strata[b] and len(picked) < size:
                picked.append(strata[b].pop())
    return picked


def _criterion_agreement(version: RubricVersion) -> dict[str, float]:
    """Per criterion, the agreement dashboard's percent agreement (items paired by `selectors.label_score_cells`),
    pooled over the version's judges; criteria with no paired item are absent."""
    cells, _ = label_score_cells(label_version_id=version.pk, steps=criterion_steps(form_criteria(version)),
                                 carried=carried_label_versions(version), work_mem=None)
    pooled: dict[str, list[np.ndarray]] = defaultdict(list)
    for (_, key), pairs in cells.items():
        pooled[key].append(np.stack([pairs.judge, pairs.human, pairs.counts]))
    shares = {}
    for key, parts in pooled.items():
        judge, human, counts = np.concatenate(parts, axis=1)
        share = percent_agreement(judge, human, counts=counts).value
        if share is not None:
            shares[key] = share
    return shares


def _disagreement(candidates: QuerySet[Rollout], version: RubricVersion, size: int, rng: random.Random) -> Picked:
    """Highest uncertainty first. Per rollout and criterion: closeness of the judge score to the middle of the scale
    (a verdict that could have gone either way), plus the spread between judges that scored it; weighted by how
    little judge and humans agree on that criterion so far. Plus the spread of totals within the rollout's GRPO
    group, where samples of one prompt disagree."""
    agreement = _criterion_agreement(version)
    scores = (
        CriterionScore.objects.filter(
            rubric_version=version, rollout__in=candidates.order_by().values("pk"), score__isnull=False
        )
        .values("rollout_id", "criterion_key")
        .annotate(mean=Avg("score"), spread=Max("score") - Min("score"))
        .values_list("rollout_id", "criterion_key", "mean", "spread")
    )
    priority: dict[int, float] = defaultdict(float)
    for rollout_id, key, mean, spread in scores:
        boundary = 1.0 - 2.0 * abs(mean - 0.5)
        weight = 1.0 - agreement.get(key, UNKNOWN_AGREEMENT)
        priority[rollout_id] = max(priority[rollout_id], weight * (boundary + spread))
    group_spread = dict(
        RolloutScore.objects.filter(rubric_version=version, rollout__in=candidates.order_by().values("pk"))
        .values("rollout__group_key").annotate(sd=StdDev("total")).values_list("rollout__group_key", "sd")
    )
    for rollout_id, group_key in candidates.filter(pk__in=list(priority)).values_list("pk", "group_key"):
        priority[rollout_id] += group_spread.get(group_key) or 0.0
    ranked = sorted(priority.items(), key=lambda kv: (-kv[1], rng.random()))
    return [(rollout_id, round(p, 4)) for rollout_id, p in ranked[:size]]


def _zero_variance(candidates: QuerySet[Rollout], version: RubricVersion, size: int, rng: random.Random) -> Picked:
    """Whole GRPO groups whose samples all got the same total: they teach nothing, so is the rubric blind here?"""
    groups = list(
        RolloutScore.objects.filter(rubric_version=version, rollout__in=candidates.order_by().values("pk"), total__isnull=False)
        .values("rollout__group_key")
        .annotate(n=Count("pk"), low=Min("total"), high=Max("total"))
        .filter(n__gt=1)
        .values_list("rollout__group_key", "low", "high")
    )
    flat = sorted(key for key, low, high in groups if high - low < 1e-9)
    rng.shuffle(flat)
    members: dict[str, list[int]] = defaultdict(list)
    totals = _totals(candidates, version)
    for rollout_id, group_key in candidates.filter(group_key__in=flat).order_by("group_key", "sample_index", "pk").values_list("pk", "group_key"):
        members[group_key].append(rollout_id)
    picked: Picked = []
    for key in flat:
        if len(picked) >= size:
            break
        picked.extend((rollout_id, totals.get(rollout_id)) for rollout_id in members[key])
    return picked[:size]


def _extremes(candidates: QuerySet[Rollout], version: RubricVersion, size: int) -> Picked:
    """Training rollouts the reward liked most and least: where reward hacking shows first."""
    ranked = sorted(_totals(candidates, version).items(), key=lambda kv: (kv[1], kv[0]))
    top_n = (size + 1) // 2
    top = ranked[::-1][:top_n]
    bottom = [kv for kv in ranked[: size - top_n] if kv not in top]
    return [*top, *bottom]


def pair_partner(*, project_id: int, rollout_ids: list[int], rng: random.Random) -> dict[int, int]:
    """For pairwise queues: another rollout of the same prompt (group) for each rollout, where one exists."""
    groups = dict(Rollout.objects.filter(pk__in=rollout_ids).values_list("pk", "group_key"))
    siblings: dict[str, list[int]] = defaultdict(list)
    for rollout_id, key in Rollout.objects.filter(project_id=project_id, group_key__in=set(groups.values())).order_by("pk").values_list("pk", "group_key"):
        siblings[key].append(rollout_id)
    partners = {}
    for rollout_id, key in groups.items():
        others = [r for r in siblings[key] if r != rollout_id]
        if others:
            partners[rollout_id] = rng.choice(others)
    return partners



def follow_run(
    *, candidates: QuerySet[Rollout], version: RubricVersion, after_step: int, per_step: int, budget: int, seed: int
) -> tuple[Picked, int]:
    """A queue following a training run: from each step after `after_step`, `per_step` rollouts stratified by reward
    (the step's rollouts sorted by reward and cut into `per_step` equal bins, one drawn from each), until `budget`
    items are picked. Returns the picks and the last step looked at (the queue's new watermark).

    Seeded per step (`seed` and the step number), so the same steps always give the same picks, however the run's
    rollouts arrived between calls. Rollouts without a reward yet sort first."""
    rows = list(candidates.filter(step__gt=after_step).order_by("step", "pk").values_list("pk", "step"))
    if not rows:
        return [], after_step
    totals = _totals(candidates.filter(step__gt=after_step), version)
    steps: dict[int, list[int]] = defaultdict(list)
    for rollout_id, step in rows:
        if step is not None:
            steps[int(step)].append(rollout_id)
    picked: Picked = []
    for step in sorted(steps):
        take = min(per_step, len(steps[step]), budget - len(picked))
        if take <= 0:
            continue
        members = sorted(steps[step], key=lambda r: (totals.get(r, -1.0), r))
        rng = random.Random(f"{seed}:{step}")
        bins = [members[len(members) * i // take: len(members) * (i + 1) // take] for i in range(take)]
        picked.extend((chosen, totals.get(chosen)) for chosen in (rng.choice(b) for b in bins))
    return picked, max(steps)


MAX_RANKED = 8  # a group larger than this is ranked on its first MAX_RANKED rollouts


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
        group = groups.get(rollout_id)
        if group is None or group in seen or len(members[group]) < 2:
            continue
        seen.add(group)
        others = [r for r in members[group] if r != rollout_id]
        result.append((rollout_id, [rollout_id, *others][:MAX_RANKED]))
    return result
