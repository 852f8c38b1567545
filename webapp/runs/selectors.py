from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from webapp.core.models import JobStatus, Project
from webapp.judging.models import PROGRAMMATIC, CriterionScore, RolloutScore
from webapp.rollouts.models import Rollout
from webapp.runs.models import Checkpoint, CheckpointEvaluation, TrainingMetric, TrainingRun


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


SILENT_AFTER_S = 120


def run_silent(run: TrainingRun) -> bool:
    """A running run whose monitor has not reported for a while (it reports every few seconds): its node or worker
    is probably down. The run stays "running" until a worker on that node starts again and re-attaches or ends it."""
    if run.status != JobStatus.RUNNING or run.heartbeat_at is None:
        return False
    return (timezone.now() - run.heartbeat_at).total_seconds() > max(SILENT_AFTER_S, 20 * settings.RUBRICON_TRAIN_POLL_S)


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
    steps = Rollout.objects.filter(run=run, step__isnull=False).values_list("step", flat=True).distinct().order_by("step")
    return [step for step in steps if step is not None]


def run_samples(run: TrainingRun, step: int) -> list[dict[str, Any]]:
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


RESUMABLE_NAME = r"checkpoint-[0-9]+"  # what TRL names a checkpoint with optimizer and trainer state


def resumable_checkpoints(run: TrainingRun) -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(run=run, path__regex=rf"(^|/){RESUMABLE_NAME}/?$").order_by("-step")


def run_lineage(run: TrainingRun) -> dict[str, Any]:
    """The checkpoint this run continues from (with its run) and the runs that continue this one."""
    parent = (
        Checkpoint.objects.select_related("run").filter(pk=run.resumed_from_id).first()
        if run.resumed_from_id else None
    )
    children = list(TrainingRun.objects.filter(resumed_from__run=run).select_related("resumed_from").order_by("pk"))
    return {"resumed_from": parent, "resumed_by": children}


def run_evaluations(run: TrainingRun, *, limit: int = 10) -> list[dict[str, Any]]:
    """The run's latest checkpoint evaluations, each with base vs checkpoint means per criterion (three queries)."""
    evaluations = list(
        CheckpointEvaluation.objects.filter(run=run)
        .select_related("checkpoint", "base_job", "checkpoint_job", "base_judge_job", "checkpoint_judge_job")
        .order_by("-pk")[:limit]
    )
    job_ids = {job_id for e in evaluations for job_id in (e.base_job_id, e.checkpoint_job_id)}
    fingerprints = {PROGRAMMATIC} | {
        j.judge_fingerprint for e in evaluations for j in (e.base_judge_job, e.checkpoint_judge_job)
        if j is not None and j.judge_fingerprint
    }
    scored = {"rollout__job_id__in": job_ids, "rubric_version_id": run.rubric_version_id,
              "judge_fingerprint__in": fingerprints}
    criteria: dict[tuple[int, str], dict[str, Any]] = {
        (row["rollout__job_id"], row["criterion_key"]): row
        for row in CriterionScore.objects.filter(**scored).values("rollout__job_id", "criterion_key")
        .annotate(mean=Avg("score"), n=Count("score")).order_by()
    } if job_ids else {}
    totals: dict[int, dict[str, Any]] = {
        row["rollout__job_id"]: row
        for row in RolloutScore.objects.filter(**scored).values("rollout__job_id")
        .annotate(mean=Avg("total"), n=Count("total"), unscored=Count("id", filter=Q(total__isnull=True))).order_by()
    } if job_ids else {}
    spec = run.rubric_version.spec.get("criteria") or []
    result = []
    for evaluation in evaluations:
        rows = []
        for criterion in spec:
            base = criteria.get((evaluation.base_job_id, criterion["key"]), {})
            checkpoint = criteria.get((evaluation.checkpoint_job_id, criterion["key"]), {})
            rows.append(_comparison_row(criterion["key"], criterion.get("title") or criterion["key"],
                                        criterion.get("weight"), base, checkpoint))
        total = _comparison_row("total", "Total reward", None, totals.get(evaluation.base_job_id, {}),
                                totals.get(evaluation.checkpoint_job_id, {}))
        result.append({"evaluation": evaluation, "rows": rows, "total": total,
                       "live": evaluation.status not in JobStatus.finished()})
    return result


def _comparison_row(key: str, title: str, weight: float | None, base: dict[str, Any], checkpoint: dict[str, Any]) -> dict[str, Any]:
    base_mean, checkpoint_mean = base.get("mean"), checkpoint.get("mean")
    delta = checkpoint_mean - base_mean if base_mean is not None and checkpoint_mean is not None else None
    return {"key": key, "title": title, "weight": weight, "base": base_mean, "checkpoint": checkpoint_mean,
            "delta": delta, "base_n": base.get("n", 0), "checkpoint_n": checkpoint.get("n", 0),
            "base_unscored": base.get("unscored", 0), "checkpoint_unscored": checkpoint.get("unscored", 0)}


def runs_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "training_runs": TrainingRun.objects.filter(project=project).count(),
    }
