from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Avg, Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.rollouts.models import Rollout
from webapp.rollouts.selectors import RolloutFilterMeaning
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


def judge_job_criterion_summary(job: JudgeJob) -> list[dict[str, Any]]:
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


def rollout_filter_scores(
    rollouts: QuerySet[Rollout], filters: Mapping[str, Any], meaning: RolloutFilterMeaning
) -> QuerySet[Rollout]:
    """The rollout filter's score clause (registered in apps.py): bounds on the total (`score_min`, `score_max`)
    under `rubric_version` (or under any version, where `meaning.bounds_any_version`), only rollouts scored under
    the version where `meaning.scored_under`, and that version's totals prefetched into `selected_scores` where
    `meaning.prefetch_scores`."""
    version_id = filters.get("rubric_version")
    hidden = meaning.hidden_scores
    bounded = "score_min" in filters or "score_max" in filters
    if bounded and (version_id or meaning.bounds_any_version):
        scores = RolloutScore.objects.filter(rollout=OuterRef("pk"))
        if version_id:
            scores = scores.filter(rubric_version_id=version_id)
        if "score_min" in filters:
            scores = scores.filter(total__gte=filters["score_min"])
        if "score_max" in filters:
            scores = scores.filter(total__lte=filters["score_max"])
        rollouts = rollouts.filter(Exists(scores))
        if hidden is not None:  # blind review: a blind rollout looks unscored, so no bound matches it
            rollouts = rollouts.exclude(pk__in=hidden)
    if not version_id:
        return rollouts
    if meaning.scored_under:
        rollouts = rollouts.filter(
            Exists(RolloutScore.objects.filter(rollout=OuterRef("pk"), rubric_version_id=version_id)))
        if hidden is not None:
            rollouts = rollouts.exclude(pk__in=hidden)
    if not meaning.prefetch_scores:
        return rollouts
    totals = RolloutScore.objects.filter(rubric_version_id=version_id)
    if hidden is not None:  # blind review: annotators do not see judge scores of items they must label
        totals = totals.exclude(rollout_id__in=hidden)
    return rollouts.prefetch_related(Prefetch("scores", queryset=totals, to_attr="selected_scores"))


def rollout_group(project: Project, group_key: str, *, hidden_scores: QuerySet[Any] | None = None) -> list[Rollout]:
    """The n samples of one prompt, each with all its criterion scores and totals (none of `hidden_scores`' rollouts:
    blind review)."""
    criterion_scores = CriterionScore.objects.select_related("rubric_version", "job__endpoint").order_by(
        "rubric_version_id", "criterion_key")
    totals = RolloutScore.objects.select_related("rubric_version__rubric")
    if hidden_scores is not None:
        criterion_scores = criterion_scores.exclude(rollout_id__in=hidden_scores)
        totals = totals.exclude(rollout_id__in=hidden_scores)
    return list(
        Rollout.objects.filter(project=project, group_key=group_key)
        .select_related("task", "example")
        .prefetch_related(
            Prefetch("criterion_scores", queryset=criterion_scores), Prefetch("scores", queryset=totals),
        )
        .order_by("sample_index", "id")
    )


def rollout_scores(rollout: Rollout) -> list[CriterionScore]:
    return list(
        rollout.criterion_scores.select_related("rubric_version__rubric", "job__endpoint").order_by("-rubric_version_id", "criterion_key")
    )
