from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.rollouts.models import GenerationJob, Rollout

# Filters that read other apps' rows (judge scores, human labels) are contributed by those apps, which sit above
# rollouts in the app order: each registers a clause in its AppConfig.ready (judging: score bounds and the scores of
# the chosen rubric version; reviews: labeled or not). One selector, one meaning of every filter, for the rollout
# browser, judge and review selections, exports and the API.
RolloutFilterClause = Callable[[QuerySet[Rollout], Mapping[str, Any], "QuerySet[Any] | None"], QuerySet[Rollout]]
_clauses: list[RolloutFilterClause] = []


def rollout_filter_register(clause: RolloutFilterClause) -> None:
    if clause not in _clauses:
        _clauses.append(clause)


def rollout_browse(
    project: Project, *, filters: Mapping[str, Any] | None = None, hidden_scores: QuerySet[Any] | None = None
) -> QuerySet[Rollout]:
    """Rollouts of a project under the browser's filters, newest first; scores of the chosen rubric version
    are prefetched into `selected_scores` so a page costs the same number of queries at any size."""
    f = filters or {}
    rollouts = Rollout.objects.filter(project=project)
    for field, lookup in (("task", "task_id"), ("job", "job_id"), ("run", "run_id"), ("model", "model_name"),
                          ("source", "source")):
        if f.get(field):
            rollouts = rollouts.filter(**{lookup: f[field]})
    if f.get("ids"):
        rollouts = rollouts.filter(pk__in=f["ids"])
    if f.get("errors_only"):
        rollouts = rollouts.exclude(error="")
    if f.get("q"):
        # On Postgres this is UPPER(completion) LIKE UPPER('%q%'), the exact expression the trigram index of
        # migration rollouts.0002_rollout_text_trgm serves; another lookup (iregex, ILIKE) would miss the index.
        rollouts = rollouts.filter(completion__icontains=f["q"])
    for clause in _clauses:
        rollouts = clause(rollouts, f, hidden_scores)
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
