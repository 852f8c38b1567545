from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.rollouts.models import GenerationJob, Rollout

# Filters that read other apps' rows (judge scores, human labels) are contributed by those apps, which sit above
# rollouts in the app order: each registers a clause in its AppConfig.ready (judging: score bounds and the scores of
# the chosen rubric version; reviews: labeled or not). One selector, one meaning of every filter, for the rollout
# browser, judge and review selections, exports and the API; where a caller's filter means more, it says so with an
# explicit `RolloutFilterMeaning` flag rather than a filter of its own.


@dataclass(frozen=True)
class RolloutFilterMeaning:
    """How the score and label filters read, per caller (the defaults are the rollout browser's)."""

    # Blind review: rollouts whose scores the caller may not see; no score bound matches them.
    hidden_scores: QuerySet[Any] | None = None
    # `rubric_version` also keeps only rollouts scored under it (API). Otherwise it only chooses whose scores the
    # bounds compare and the page shows.
    scored_under: bool = False
    # Score bounds without a `rubric_version` compare the totals of any version (API); otherwise they are ignored.
    bounds_any_version: bool = False
    # `labeled` counts only labels under `rubric_version`, when one is given (exports, API); otherwise any label.
    labels_under_version: bool = False
    # Prefetch the chosen version's totals into `selected_scores` (the browser's list).
    prefetch_scores: bool = False


RolloutFilterClause = Callable[[QuerySet[Rollout], Mapping[str, Any], RolloutFilterMeaning], QuerySet[Rollout]]
_clauses: list[RolloutFilterClause] = []
# filter name -> lookup, for the filters that compare a column of the rollout.
_FIELDS = (("task", "task_id"), ("job", "job_id"), ("run", "run_id"), ("model", "model_name"), ("source", "source"),
           ("split", "example__split"), ("example", "example_id"), ("step", "step"), ("group_key", "group_key"))


def rollout_filter_register(clause: RolloutFilterClause) -> None:
    if clause not in _clauses:
        _clauses.append(clause)


def rollout_filter(
    project: Project, *, filters: Mapping[str, Any] | None = None, meaning: RolloutFilterMeaning | None = None
) -> QuerySet[Rollout]:
    """The project's rollouts under typed filters (no order, no columns chosen): task, job, run, model, source,
    split, example, step, group_key, ids, errors_only, q (text in the completion), and the registered clauses'
    rubric_version, score_min, score_max, labeled ("yes"/"no"). Empty values (None, "") are no filter."""
    f = {k: v for k, v in (filters or {}).items() if v is not None and v != ""}
    rollouts = Rollout.objects.filter(project=project)
    for field, lookup in _FIELDS:
        if field in f:
            rollouts = rollouts.filter(**{lookup: f[field]})
    if f.get("ids"):
        rollouts = rollouts.filter(pk__in=f["ids"])
    if f.get("errors_only"):
        rollouts = rollouts.exclude(error="")
    if f.get("q"):
        # On Postgres this is UPPER(completion) LIKE UPPER('%q%'), the exact expression the trigram index of
        # migration rollouts.0002_rollout_text_trgm serves; another lookup (iregex, ILIKE) would miss the index.
        rollouts = rollouts.filter(completion__icontains=f["q"])
    meaning = meaning or RolloutFilterMeaning()
    for clause in _clauses:
        rollouts = clause(rollouts, f, meaning)
    return rollouts


def rollout_browse(
    project: Project, *, filters: Mapping[str, Any] | None = None, hidden_scores: QuerySet[Any] | None = None
) -> QuerySet[Rollout]:
    """Rollouts of a project under the browser's filters, newest first; scores of the chosen rubric version
    are prefetched into `selected_scores` so a page costs the same number of queries at any size."""
    rollouts = rollout_filter(
        project, filters=filters, meaning=RolloutFilterMeaning(hidden_scores=hidden_scores, prefetch_scores=True)
    )
    # The list shows a preview; the full trajectory is loaded on the detail and group pages only.
    return rollouts.select_related("task", "example").defer("messages", "prompt_messages", "metadata")


def rollout_get(project: Project, rollout_id: int) -> Rollout:
    return get_object_or_404(
        Rollout.objects.select_related("task", "example", "job", "run"), project=project, pk=rollout_id
    )


def generation_job_list(project: Project) -> QuerySet[GenerationJob]:
    return project.generation_jobs.select_related("task", "endpoint").order_by("-id")


def rollouts_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "rollouts": Rollout.objects.filter(project=project).count(),
            "generation_jobs": GenerationJob.objects.filter(project=project).count(),
    }
