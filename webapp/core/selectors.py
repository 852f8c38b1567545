from __future__ import annotations

from django.db.models import Count, OuterRef, QuerySet, Subquery

from webapp.core.models import Membership, Project, WorkerHeartbeat


def projects_for_user(user) -> QuerySet[Project]:
    """The user's projects, each annotated with `role`."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return Project.objects.filter(memberships__user=user).annotate(role=Subquery(role)).order_by("name")


def project_members(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


def project_counts(project: Project) -> dict[str, int]:
    """Headline numbers for the dashboard, one aggregate query per table."""
    from webapp.exports.models import Export
    from webapp.judging.models import JudgeJob
    from webapp.reviews.models import HumanLabel
    from webapp.rollouts.models import GenerationJob, Rollout
    from webapp.runs.models import TrainingRun
    from webapp.tasks.models import Example

    project_stats = Project.objects.filter(pk=project.pk).aggregate(
        tasks=Count("tasks", distinct=True),
        rubrics=Count("rubrics", distinct=True),
        endpoints=Count("endpoints", distinct=True),
    )
    return {
        **project_stats,
        "examples": Example.objects.filter(task__project=project).count(),
        "rollouts": Rollout.objects.filter(project=project).count(),
        "generation_jobs": GenerationJob.objects.filter(project=project).count(),
        "judge_jobs": JudgeJob.objects.filter(project=project).count(),
        "labels": HumanLabel.objects.filter(rollout__project=project).count(),
        "training_runs": TrainingRun.objects.filter(project=project).count(),
        "exports": Export.objects.filter(project=project).count(),
    }


def workers_seen() -> QuerySet[WorkerHeartbeat]:
    return WorkerHeartbeat.objects.order_by("queue", "-seen_at")
