from __future__ import annotations

from django.db.models import Avg, Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.judging.models import CriterionScore, JudgeJob
from webapp.rubrics.models import Rubric


def judge_job_list(project: Project, *, rubric: Rubric | None = None) -> QuerySet[JudgeJob]:
    jobs = JudgeJob.objects.filter(project=project).select_related("rubric_version__rubric", "endpoint", "created_by")
    if rubric is not None:
        jobs = jobs.filter(rubric_version__rubric=rubric)
    return jobs.order_by("-id")


def judge_job_get(project: Project, job_id: int) -> JudgeJob:
    return get_object_or_404(
        JudgeJob.objects.select_related("rubric_version__rubric", "endpoint", "created_by"), project=project, pk=job_id
    )


def judge_job_criterion_summary(job: JudgeJob) -> list[dict]:
    """Per criterion: how many scored, how many failed, the mean score (one grouped query)."""
    return list(
        CriterionScore.objects.filter(job=job)
        .values("criterion_key")
        .annotate(n=Count("id"), failed=Count("id", filter=Q(score__isnull=True)), mean=Avg("score"))
        .order_by("criterion_key")
    )


def judging_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "judge_jobs": JudgeJob.objects.filter(project=project).count(),
    }
