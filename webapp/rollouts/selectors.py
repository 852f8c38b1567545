from __future__ import annotations

from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rubrics.models import RubricVersion


def rollout_browse(
    project: Project, *, filters: dict | None = None, hidden_scores: QuerySet | None = None
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
    if f.get("labeled"):
        has_labels = Exists(HumanLabel.objects.filter(rollout=OuterRef("pk")))
        rollouts = rollouts.filter(has_labels if f["labeled"] == "yes" else ~has_labels)
    version_id = f.get("rubric_version")
    if version_id:
        if "score_min" in f or "score_max" in f:
            scores = RolloutScore.objects.filter(rollout=OuterRef("pk"), rubric_version_id=version_id)
            if "score_min" in f:
                scores = scores.filter(total__gte=f["score_min"])
            if "score_max" in f:
                scores = scores.filter(total__lte=f["score_max"])
            rollouts = rollouts.filter(Exists(scores))
            if hidden_scores is not None:  # blind review: a blind rollout looks unscored, so no bound matches it
                rollouts = rollouts.exclude(pk__in=hidden_scores)
        scores = RolloutScore.objects.filter(rubric_version_id=version_id)
        if hidden_scores is not None:  # blind review: annotators do not see judge scores of items they must label
            scores = scores.exclude(rollout_id__in=hidden_scores)
        rollouts = rollouts.prefetch_related(Prefetch("scores", queryset=scores, to_attr="selected_scores"))
    # The list shows a preview; the full trajectory is loaded on the detail and group pages only.
    return rollouts.select_related("task", "example").defer("messages", "prompt_messages", "metadata")


def rollout_get(project: Project, rollout_id: int) -> Rollout:
    return get_object_or_404(
        Rollout.objects.select_related("task", "example", "job", "run"), project=project, pk=rollout_id
    )


def rollout_group(project: Project, group_key: str, *, hidden_scores: QuerySet | None = None) -> list[Rollout]:
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


def rollout_labels(rollout: Rollout) -> list[HumanLabel]:
    """Every human label of the rollout (all rubric versions and annotators), newest version first."""
    return list(
        HumanLabel.objects.filter(rollout=rollout).select_related("rubric_version__rubric", "annotator", "queue")
        .order_by("-rubric_version_id", "criterion_key", "annotator__username")
    )


def rubric_versions_with_scores(project: Project) -> QuerySet[RubricVersion]:
    return RubricVersion.objects.filter(rubric__project=project).select_related("rubric").order_by("-id")


def generation_job_list(project: Project) -> QuerySet[GenerationJob]:
    return project.generation_jobs.select_related("task", "endpoint").order_by("-id")


def rollouts_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "rollouts": Rollout.objects.filter(project=project).count(),
            "generation_jobs": GenerationJob.objects.filter(project=project).count(),
    }
