from __future__ import annotations

from pathlib import Path

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.judging.models import CriterionScore
from webapp.rollouts.models import Rollout
from webapp.runs.models import Checkpoint, TrainingMetric, TrainingRun


def run_list(project: Project) -> QuerySet[TrainingRun]:
    return (
        project.training_runs.select_related("created_by", "task", "rubric_version__rubric")
        .annotate(step_count=Count("metrics"))
        .order_by("-id")
    )


def run_get(project: Project, run_id: int) -> TrainingRun:
    return get_object_or_404(
        TrainingRun.objects.select_related("task", "rubric_version__rubric", "judge_endpoint", "created_by"),
        project=project, pk=run_id,
    )


def runs_by_ids(project: Project, run_ids: list[int]) -> list[TrainingRun]:
    return list(TrainingRun.objects.filter(project=project, pk__in=run_ids).order_by("pk"))


def run_metrics(run: TrainingRun) -> list[TrainingMetric]:
    return list(TrainingMetric.objects.filter(run=run).order_by("step"))


def metrics_by_run(runs: list[TrainingRun]) -> dict[int, list[TrainingMetric]]:
    grouped: dict[int, list[TrainingMetric]] = {run.pk: [] for run in runs}
    for metric in TrainingMetric.objects.filter(run__in=runs).order_by("run_id", "step"):
        grouped[metric.run_id].append(metric)
    return grouped


def run_checkpoints(run: TrainingRun) -> list[Checkpoint]:
    return list(Checkpoint.objects.filter(run=run).order_by("step"))


def project_checkpoints(project: Project) -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(run__project=project).select_related("run").order_by("-run_id", "-step")


def run_sample_steps(run: TrainingRun) -> list[int]:
    return list(Rollout.objects.filter(run=run).values_list("step", flat=True).distinct().order_by("step"))


def run_samples(run: TrainingRun, step: int) -> list[dict]:
    """The sampled completions of one step, in group order, each with its reward breakdown (two queries)."""
    rollouts = list(
        Rollout.objects.filter(run=run, step=step).order_by("group_key", "sample_index")
    )
    by_rollout: dict[int, dict[str, float | None]] = {r.pk: {} for r in rollouts}
    for rollout_id, key, score in CriterionScore.objects.filter(
        rollout__in=rollouts, rubric_version_id=run.rubric_version_id, judge_fingerprint="training-reward"
    ).values_list("rollout_id", "criterion_key", "score"):
        by_rollout[rollout_id][key] = score
    return [
        {"rollout": r, "rewards": sorted(by_rollout[r.pk].items()), "total": (r.metadata or {}).get("reward_total")}
        for r in rollouts
    ]


def run_log_tail(run: TrainingRun, *, lines: int = 60) -> str:
    if not run.log_path or not Path(run.log_path).exists():
        return ""
    with open(run.log_path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 32_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
