from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.rollouts.models import GenerationJob, Rollout


def rollout_list(project: Project, *, task_id: int | None = None, job_id: int | None = None) -> QuerySet[Rollout]:
    rollouts = Rollout.objects.filter(project=project).select_related("task", "example")
    if task_id:
        rollouts = rollouts.filter(task_id=task_id)
    if job_id:
        rollouts = rollouts.filter(job_id=job_id)
    # The list shows a preview; the full trajectory is loaded on the detail page only.
    return rollouts.defer("messages", "prompt_messages", "metadata")


def rollout_get(project: Project, rollout_id: int) -> Rollout:
    return get_object_or_404(Rollout.objects.select_related("task", "example", "job"), project=project, pk=rollout_id)


def generation_job_list(project: Project) -> QuerySet[GenerationJob]:
    return project.generation_jobs.select_related("task", "endpoint").order_by("-id")
