"""Training runs: launch, ingest what the GRPO process reports, cancel, finish.

Flow: training_run_create (web) → workers.training.launch_run claims the run and starts `python -m
training.grpo.run` as its own process group → workers.training.monitor_run, every ~1 s while the process lives,
calls training_run_ingest (new lines of the sink files → TrainingMetric / Rollout + scores / Checkpoint rows,
offsets on the run, one transaction) and, once the process is gone, training_run_finish.

The process is the source of progress, the database the source of truth: a cancel is `cancel_requested_at` on the
run, which the monitor turns into a STOP file (then SIGTERM); a process that dies is a failed run with the reason.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pydantic import ValidationError

from training.grpo.config import (
    PRESETS,
    ExampleRow,
    GRPORunConfig,
    JudgeEndpoint,
    LocalJudge,
    PresetName,
    config_from_preset,
)
from training.grpo.sinks import CHECKPOINTS_FILE, METRICS_FILE, SAMPLES_FILE, read_status
from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_cancel, job_chain_end, job_fail, job_finish, job_progress, job_start
from webapp.core.models import JobChunk, JobStatus, Project
from webapp.core.params import parse_id
from webapp.core.paths import run_dir
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.endpoints.services import api_key_env_check, base_url_check, endpoint_outbound, model_check
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.reviews.calibration import calibration_status
from webapp.rollouts.models import GenerationJob, Rollout, RolloutSource
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.services import rubric_spec_validate
from webapp.runs.models import Checkpoint, CheckpointEvaluation, TrainingMetric, TrainingRun
from webapp.runs.selectors import RESUMABLE_NAME, run_log_tail
from webapp.tasks.models import Example, Task

logger = logging.getLogger(__name__)

TRAINING_REWARD = "training-reward"  # judge_fingerprint of the rewards a run computed while training
CHECKPOINT_PREFIX = "checkpoint:"  # base_model "checkpoint:<id>" = a checkpoint of an earlier run
PRESET_LABELS: dict[str, str] = {"cpu-smoke": "CPU smoke test", "single-gpu": "Single GPU", "multi-gpu": "Multi-GPU"}
# Which config field a model-level validation message belongs to, so the form shows it at that field.
_MESSAGE_FIELDS = (("epsilon_high", "epsilon"), ("use_vllm", "use_vllm"), ("vllm", "use_vllm"),
                   ("num_generations", "num_generations"))


# ------------------------------------------------------------------------------------------------------------
# Launch


def _config_errors(error: ValidationError) -> list[dict[str, str]]:
    errors = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        field = str(item["loc"][0]) if item["loc"] else ""
        if not field:
            field = next((f for word, f in _MESSAGE_FIELDS if word in message), "")
        errors.append({"field": field, "message": message})
    return errors


def _base_model(project: Project, base_model: str) -> str:
    """What the config's `model` is: a checkpoint of an earlier run in this project becomes its directory."""
    value = base_model.strip()
    if not value.startswith(CHECKPOINT_PREFIX):
        model_check(project=project, model=value, field="base_model")
        return value
    checkpoint_id = value.removeprefix(CHECKPOINT_PREFIX)
    checkpoint_pk = parse_id(checkpoint_id, field="base_model")
    checkpoint = (
        Checkpoint.objects.filter(pk=checkpoint_pk, run__project=project).first() if checkpoint_pk else None
    )
    if checkpoint is None:
        raise ApplicationError("That checkpoint does not exist in this project.", field="base_model")
    return checkpoint.path


def _judge_config(endpoint: ModelEndpoint) -> tuple[JudgeEndpoint | None, LocalJudge | None]:
    """How the training process reaches the judge: over HTTP for an OpenAI-compatible endpoint; a local endpoint
    (transformers, or a vLLM engine) is loaded by the training process itself (in-process, or vLLM's own server on
    a loopback port for the length of the run), with the sampling settings its judge jobs use."""
    if endpoint.kind in (EndpointKind.TRANSFORMERS, EndpointKind.VLLM):
        model_check(project=endpoint.project, model=endpoint.model, field="judge_endpoint")
        params = endpoint.default_params or {}
        try:
            local = LocalJudge(
                model=endpoint.model,
                engine="vllm" if endpoint.kind == EndpointKind.VLLM else "transformers",
                max_new_tokens=int(params.get("max_tokens", 512)),
                temperature=float(params.get("temperature", 0.0)),
                enforce_eager=bool(settings.RUBRICON_VLLM_ENFORCE_EAGER),
            )
        except (ValidationError, TypeError, ValueError) as error:
            raise ApplicationError(f"The judge endpoint {endpoint.name!r} has unusable sampling defaults: {error}",
                                   field="judge_endpoint") from None
        return None, local
    if not endpoint.base_url:
        raise ApplicationError(
            f"The judge endpoint {endpoint.name!r} has no base URL: give it the address of its OpenAI-compatible "
            "server (e.g. http://gpu-node:8000/v1).",
            field="judge_endpoint",
        )
    try:
        endpoint_outbound(endpoint)
    except ApplicationError as error:
        raise ApplicationError(f"The judge endpoint {endpoint.name!r}: {error.message}", field="judge_endpoint") from None
    return JudgeEndpoint(base_url=endpoint.base_url, model=endpoint.model, api_key_env=endpoint.api_key_env or None,
                         max_concurrency=endpoint.max_concurrency), None


def training_run_launch_check(*, run: TrainingRun) -> None:
    """Worker side, right before the process starts: the model path and the judge's key variable and host pass the
    rules of today (a run queued before the operator tightened them must not load another project's checkpoint or
    send a secret out). The training process checks the key variable and host once more itself."""
    model_check(project=run.project, model=str(run.config.get("model") or ""), field="base_model")
    local_judge = run.config.get("local_judge") or {}
    if local_judge.get("model"):
        model_check(project=run.project, model=str(local_judge["model"]), field="judge_endpoint")
    judge = run.config.get("judge") or {}
    if judge.get("api_key_env"):
        api_key_env_check(judge["api_key_env"])
    if judge.get("base_url"):
        base_url_check(judge["base_url"])


@transaction.atomic
def training_run_create(
    *,
    project: Project,
    name: str,
    task: Task,
    rubric_version: RubricVersion,
    preset: PresetName,
    split: str = "train",
    base_model: str = "bundled",
    judge_endpoint: ModelEndpoint | None = None,
    options: dict[str, Any] | None = None,
    calibration_override: bool = False,
    calibration_note: str = "",
    created_by: Any = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Validate everything a run needs (config, rubric, calibration) and queue it on `train`.

    `options` are GRPORunConfig fields that win over the preset's values. Errors are ApplicationErrors whose
    `extra["errors"]` list every invalid config field with a message that says how to fix it.
    """
    if task.project_id != project.pk:
        raise ApplicationError("That task belongs to another project.", field="task")
    if rubric_version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", field="rubric_version")
    if judge_endpoint is not None and judge_endpoint.project_id != project.pk:
        raise ApplicationError("That endpoint belongs to another project.", field="judge_endpoint")
    if preset not in PRESETS:
        raise ApplicationError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.", field="preset")
    spec = rubric_spec_validate(rubric_version.spec)
    # Every problem at once, each at its field: judge, config values, then the calibration gate.
    errors: list[dict[str, str]] = []
    judge, local_judge = None, None
    if spec.judge_criteria and judge_endpoint is None:
        keys = ", ".join(c.key for c in spec.judge_criteria)
        errors.append({"field": "judge_endpoint",
                       "message": f"This rubric has LM-judge criteria ({keys}); choose a judge endpoint for the rewards."})
    elif spec.judge_criteria and judge_endpoint is not None:
        judge, local_judge = _judge_config(judge_endpoint)

    examples = Example.objects.filter(task=task).order_by("pk")
    if split:
        examples = examples.filter(split=split)
    rows = [
        ExampleRow(prompt=e.messages or e.prompt, answer=e.answer or None, example_id=str(e.pk))
        for e in examples.only("pk", "prompt", "messages", "answer")
    ]
    if not rows:
        raise ApplicationError(f"Task {task.name!r} has no {split or ''} examples to train on.", field="split")
    model = _base_model(project, base_model)

    try:
        config = config_from_preset(
            preset,
            **{k: v for k, v in (options or {}).items() if v is not None},
            model=model,
            examples=rows,
            system_prompt=task.system_prompt or None,
            rubric=rubric_version.spec,
            python_allowlist=list(settings.RUBRICON_PYTHON_REWARD_ALLOWLIST),
            rubric_version_id=rubric_version.pk,
            judge=judge,
            local_judge=local_judge,
        )
    except ValidationError as error:
        errors.extend(_config_errors(error))
    calibration = calibration_status(rubric_version)
    if not calibration.ok and not calibration_override:
        errors.append({"field": "calibration_override",
                       "message": f"{calibration.summary} Tick the confirmation to train on this judge anyway."})
    elif not calibration.ok and not calibration_note.strip():
        errors.append({"field": "calibration_note",
                       "message": "Say why you train on an uncalibrated judge: the note is kept with the run."})
    if errors:
        raise ApplicationError(errors[0]["message"], field=errors[0]["field"] or None, extra={"errors": errors})

    run = TrainingRun.objects.create(
        project=project, name=name.strip() or f"{task.name} × {rubric_version}", task=task, split=split,
        rubric_version=rubric_version, judge_endpoint=judge_endpoint, base_model=base_model.strip(),
        config=config.model_dump(mode="json"), calibration_override=not calibration.ok and calibration_override,
        calibration_note=calibration_note.strip() if not calibration.ok else "", created_by=created_by,
    )
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.training.launch_run", run_id=run.pk)
    return run


def training_run_cancel(*, run: TrainingRun) -> bool:
    """Ask a run to stop. A pending run is cancelled at once; a running one when its process has stopped (the
    monitor writes the STOP file within a second). Metrics, rollouts and checkpoints already stored stay."""
    return job_cancel(model=TrainingRun, job_id=run.pk, wait_for_worker=True)


# ------------------------------------------------------------------------------------------------------------
# Worker side: claim, record the process, ingest, finish


def training_run_claim(*, run_id: int) -> TrainingRun | None:
    """pending → running, once. None when another delivery got it first or the run was cancelled meanwhile."""
    token = uuid.uuid4().hex
    directory = run_dir(run_id)
    max_steps = TrainingRun.objects.filter(pk=run_id).values_list("config__max_steps", flat=True).first()
    claimed = job_start(
        model=TrainingRun, job_id=run_id, total=max(int(max_steps or 0), 0), heartbeat_at=timezone.now(),
        monitor_token=token, output_dir=str(directory / "output"), log_path=str(directory / "train.log"),
        ingest_offsets={},
    )
    if not claimed:
        return None
    if directory.exists():
        # Left by a run of the same id in a database that was since reset (tests, a fresh dev install): its lines
        # must not be ingested as this run's. Kept aside rather than deleted, in case its checkpoints matter.
        directory.rename(directory.with_name(f"{directory.name}.stale-{uuid.uuid4().hex[:8]}"))
    directory.mkdir(parents=True)
    return TrainingRun.objects.get(pk=run_id)


def training_run_process_started(*, run_id: int, pid: int, hostname: str) -> None:
    TrainingRun.objects.filter(pk=run_id).update(pid=pid, hostname=hostname, heartbeat_at=timezone.now())


def training_run_reattach(*, run_id: int) -> str:
    """A new monitor chain for a running run (after its worker died): the old chain's token stops matching."""
    token = uuid.uuid4().hex
    TrainingRun.objects.filter(pk=run_id, status=JobStatus.RUNNING).update(monitor_token=token)
    return token


@dataclass
class IngestResult:
    metrics: int = 0
    rollouts: int = 0
    checkpoints: int = 0


def _new_lines(path: Path, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines after `offset` and the offset after them; a line still being written waits."""
    if not path.exists():
        return [], offset
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    records = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
    return records, offset + end


def training_run_ingest(*, run_id: int, token: str | None = None) -> IngestResult | None:
    """Store what the process reported since the last call. None when `token` no longer owns the run.

    Rows and the new file offsets commit together under a row lock, so two monitors (or a redelivered one) never
    store a line twice; unique constraints catch anything else.
    """
    result = IngestResult()
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("rubric_version").filter(pk=run_id).first()
        if run is None or (token is not None and run.monitor_token != token):
            return None
        directory = run_dir(run.pk)
        offsets = dict(run.ingest_offsets or {})
        metrics, offsets["metrics"] = _new_lines(directory / METRICS_FILE, offsets.get("metrics", 0))
        samples, offsets["samples"] = _new_lines(directory / SAMPLES_FILE, offsets.get("samples", 0))
        checkpoints, offsets["checkpoints"] = _new_lines(directory / CHECKPOINTS_FILE, offsets.get("checkpoints", 0))
        if metrics:
            TrainingMetric.objects.bulk_create(
                [TrainingMetric(run=run, step=m["step"], metrics=m["metrics"]) for m in metrics],
                update_conflicts=True, unique_fields=["run", "step"], update_fields=["metrics"],
            )
            result.metrics = len(metrics)
        if samples:
            result.rollouts = _store_samples(run, samples)
        if checkpoints:
            result.checkpoints = _store_checkpoints(run, checkpoints)
        TrainingRun.objects.filter(pk=run.pk).update(ingest_offsets=offsets, heartbeat_at=timezone.now())
        if metrics and (step := max(m["step"] for m in metrics)) > run.done:
            job_progress(model=TrainingRun, job_id=run.pk, done=step - run.done)  # steps done so far
    return result


def is_resumable(path: str) -> bool:
    """A checkpoint-N directory holds optimizer and trainer state; a final model holds only weights."""
    return re.fullmatch(RESUMABLE_NAME, Path(path).name) is not None


def _store_checkpoints(run: TrainingRun, records: list[dict[str, Any]]) -> int:
    """One Checkpoint per step. A stopped run saves a resumable checkpoint and the final model at the same step: the
    weights are the same, so the row keeps the path a run can be resumed from."""
    by_step: dict[int, str] = dict(
        Checkpoint.objects.filter(run=run, step__in={r["step"] for r in records}).values_list("step", "path")
    )
    for record in records:
        current = by_step.get(record["step"])
        if current is None or not is_resumable(current) or is_resumable(record["path"]):
            by_step[record["step"]] = record["path"]
    Checkpoint.objects.bulk_create(
        [Checkpoint(run=run, step=step, path=path) for step, path in by_step.items()],
        update_conflicts=True, unique_fields=["run", "step"], update_fields=["path"],
    )
    return len(records)


def _store_samples(run: TrainingRun, samples: list[dict[str, Any]]) -> int:
    """Samples → Rollout rows (source=training) with per-criterion CriterionScores and the RolloutScore total."""
    example_ids = {int(s["example_id"]) for s in samples if str(s.get("example_id") or "").isascii() and str(s.get("example_id") or "").isdigit()}
    known_examples = set(Example.objects.filter(task_id=run.task_id, pk__in=example_ids).values_list("pk", flat=True))
    keyed = {(s["step"], f"run{run.pk}-s{s['step']}-g{s['group']}", s["sample_index"]): s for s in samples}
    steps = {step for step, _, _ in keyed}
    existing = set(
        Rollout.objects.filter(run=run, step__in=steps).values_list("step", "group_key", "sample_index")
    )
    rows = []
    for (step, group_key, index), sample in keyed.items():
        if (step, group_key, index) in existing:
            continue
        prompt = sample["prompt"]
        prompt_messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        example_id = int(sample["example_id"]) if str(sample.get("example_id") or "").isascii() and str(sample.get("example_id") or "").isdigit() else None
        rows.append(Rollout(
            project_id=run.project_id, task_id=run.task_id, run=run, step=step, source=RolloutSource.TRAINING,
            example_id=example_id if example_id in known_examples else None, model_name=run.base_model[:300],
            group_key=group_key, sample_index=index, prompt_messages=prompt_messages,
            messages=[*prompt_messages, {"role": "assistant", "content": sample["completion"]}],
            completion=sample["completion"], metadata={"reward_total": sample.get("total")},
        ))
    created = Rollout.objects.bulk_create(rows, batch_size=500)
    criterion_rows, totals = [], []
    for rollout in created:
        sample = keyed[(rollout.step, rollout.group_key, rollout.sample_index)]
        for key, value in sample["rewards_per_criterion"].items():
            if key == "rubric_total":  # the gated total is the RolloutScore, not a criterion
                continue
            criterion_rows.append(CriterionScore(
                rollout=rollout, rubric_version_id=run.rubric_version_id, criterion_key=key,
                judge_fingerprint=TRAINING_REWARD, score=value, error="" if value is not None else "not scored",
            ))
        totals.append(RolloutScore(
            rollout=rollout, rubric_version_id=run.rubric_version_id, judge_fingerprint=TRAINING_REWARD,
            total=sample.get("total"), error="" if sample.get("total") is not None else "no criterion applied",
        ))
    CriterionScore.objects.bulk_create(criterion_rows, batch_size=1000, ignore_conflicts=True)
    RolloutScore.objects.bulk_create(totals, batch_size=1000, ignore_conflicts=True)
    return len(created)


def training_run_finish(*, run_id: int, exit_reason: str | None = None) -> TrainingRun:
    """The process is gone: store its last lines, then the final status from status.json and the exit reason.

    `exit_reason` describes how the process ended when the caller knows (exit code or signal); a run that never
    wrote a final status failed, with that reason and the last log lines.
    """
    training_run_ingest(run_id=run_id)
    run = TrainingRun.objects.get(pk=run_id)
    if run.status != JobStatus.RUNNING:
        return run
    status = read_status(run_dir(run.pk)) or {}
    reported = status.get("status")
    if reported == "completed":
        final, error = JobStatus.SUCCEEDED, ""
    elif reported == "stopped" and run.cancel_requested_at is not None:
        final, error = JobStatus.CANCELLED, ""
    elif reported == "stopped":
        final, error = JobStatus.FAILED, "stopped from outside Rubricon (SIGTERM or a STOP file) before the last step"
    else:
        final = JobStatus.FAILED
        if reported == "failed":
            error = f"{status.get('phase', 'run')} failed: {status.get('error', 'no reason given')}"
        elif run.cancel_requested_at is not None:
            final, error = JobStatus.CANCELLED, ""
        else:
            error = f"training process {exit_reason or 'ended without reporting a final status'}"
        if error:
            tail = run_log_tail(run, lines=20)
            error = f"{error}\n\nlast log lines:\n{tail}" if tail else error
    job_finish(model=TrainingRun, job_id=run.pk, status=final, error=error, monitor_token="")
    run.refresh_from_db()
    return run


def training_run_fail(*, run_id: int, error: str) -> None:
    job_fail(model=TrainingRun, job_id=run_id, error=error)


# ------------------------------------------------------------------------------------------------------------
# Resume: a new run that continues a failed or cancelled one from a checkpoint
#
# A new run linked to its checkpoint (`resumed_from`), not a second attempt of the same row: every row a run owns is
# keyed by its id — TrainingMetric(run, step), Rollout(run, step, group, sample), Checkpoint(run, step), the sink
# directory and its ingest offsets, pid, monitor token — and the steps after the checkpoint were already recorded
# once by the attempt that failed. A child run keeps both histories intact and a finished run stays finished; its
# step numbers go on from the checkpoint, so the compare page draws parent and child as one curve.

RESUMABLE_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)
_RESUMED_SUFFIX = re.compile(r" · resumed at step \d+$")


@transaction.atomic
def training_run_resume(
    *, run: TrainingRun, checkpoint: Checkpoint, max_steps: int | None = None, created_by: Any = None,
    enqueue: bool = True,
) -> TrainingRun:
    """Queue a run that continues `run` from `checkpoint` (TRL resume_from_checkpoint: weights, optimizer, scheduler,
    RNG and step count). `max_steps` defaults to the parent's."""
    run = TrainingRun.objects.select_for_update().get(pk=run.pk)
    if run.status not in RESUMABLE_STATUSES:
        raise ApplicationError(f"Run #{run.pk} is {run.status}: only a failed or cancelled run can be resumed.")
    if checkpoint.run_id != run.pk:
        raise ApplicationError("That checkpoint belongs to another run.", field="checkpoint")
    if not is_resumable(checkpoint.path):
        raise ApplicationError(
            f"The step {checkpoint.step} checkpoint is a final model without optimizer state; choose a checkpoint "
            "saved during training (set save_steps on the next run to have them).", field="checkpoint",
        )
    active = TrainingRun.objects.filter(resumed_from__run=run, status__in=[JobStatus.PENDING, JobStatus.RUNNING])
    if (child := active.first()) is not None:
        raise ApplicationError(f"Run #{child.pk} is already resuming this run.")
    steps = max_steps if max_steps is not None else run.config.get("max_steps")
    if steps is not None and steps <= checkpoint.step:
        raise ApplicationError(
            f"max_steps ({steps}) must be above the checkpoint's step ({checkpoint.step}), or the run has nothing "
            "left to train.", field="max_steps",
        )
    try:
        config = GRPORunConfig.model_validate(
            {**run.config, "max_steps": steps, "resume_from_checkpoint": checkpoint.path}
        )
    except ValidationError as error:
        errors = _config_errors(error)
        raise ApplicationError(errors[0]["message"], field=errors[0]["field"] or None,
                               extra={"errors": errors}) from error
    child = TrainingRun.objects.create(
        project_id=run.project_id, name=f"{_RESUMED_SUFFIX.sub('', run.name)} · resumed at step {checkpoint.step}",
        task_id=run.task_id, split=run.split, rubric_version_id=run.rubric_version_id,
        judge_endpoint_id=run.judge_endpoint_id, base_model=run.base_model, config=config.model_dump(mode="json"),
        calibration_override=run.calibration_override, calibration_note=run.calibration_note,
        resumed_from=checkpoint, created_by=created_by,
    )
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.training.launch_run", run_id=child.pk)
    return child


# ------------------------------------------------------------------------------------------------------------
# Evaluate a checkpoint: base model vs checkpoint on held-out examples, scored with the run's rubric version
#
# checkpoint_evaluation_create queues two generation jobs (or reuses the base side of an earlier evaluation with the
# same settings); workers.training.advance_evaluation calls checkpoint_evaluation_advance every few seconds, which
# creates each side's judge job once its rollouts exist and finishes the evaluation when both are scored.


def evaluation_params(run: TrainingRun) -> dict[str, Any]:
    """Sampling as the run sampled while training, with its seed: both sides draw the same random streams."""
    config = run.config
    return {"max_tokens": config.get("max_completion_length", 256), "temperature": config.get("temperature", 1.0),
            "top_p": config.get("top_p", 1.0), "seed": config.get("seed", 42)}


_FAILED = (JobStatus.FAILED, JobStatus.CANCELLED)


@transaction.atomic
def checkpoint_evaluation_create(
    *, run: TrainingRun, checkpoint: Checkpoint, endpoint: ModelEndpoint, split: str = "eval",
    samples_per_example: int = 1, created_by: Any = None, enqueue: bool = True,
) -> CheckpointEvaluation:
    from webapp.rollouts.services import generation_job_create

    if checkpoint.run_id != run.pk:
        raise ApplicationError("That checkpoint belongs to another run.", field="checkpoint")
    if endpoint.project_id != run.project_id:
        raise ApplicationError("That endpoint belongs to another project.", field="endpoint")
    if endpoint.kind == EndpointKind.OPENAI:
        raise ApplicationError(
            "Checkpoints are loaded from disk by a local engine: choose a vLLM or transformers endpoint.",
            field="endpoint",
        )
    spec = rubric_spec_validate(run.rubric_version.spec)
    if spec.judge_criteria and run.judge_endpoint is None:
        raise ApplicationError("This run's judge endpoint was deleted; its LM-judge criteria cannot be scored.")
    if not 1 <= samples_per_example <= 64:
        raise ApplicationError("Samples per example must be between 1 and 64.", field="samples_per_example")
    params = evaluation_params(run)
    earlier = (
        CheckpointEvaluation.objects.filter(run=run, split=split, samples_per_example=samples_per_example,
                                            params=params, base_job__endpoint=endpoint)
        .exclude(base_job__status__in=_FAILED).exclude(base_judge_job__status__in=_FAILED)
        .order_by("-pk").first()
    )
    jobs = {"project": run.project, "task": run.task, "endpoint": endpoint, "split": split, "params": params,
            "samples_per_example": samples_per_example, "created_by": created_by, "enqueue": enqueue}
    base_job = earlier.base_job if earlier else generation_job_create(**jobs, model=run.config.get("model", "bundled"))
    evaluation = CheckpointEvaluation.objects.create(
        run=run, checkpoint=checkpoint, split=split, samples_per_example=samples_per_example, params=params,
        base_job=base_job, checkpoint_job=generation_job_create(**jobs, checkpoint=checkpoint),
        base_judge_job=earlier.base_judge_job if earlier else None, created_by=created_by,
        # Running from its creation: its stages are jobs of their own, already queued.
        status=JobStatus.RUNNING, started_at=timezone.now(), total=4,
    )
    from webapp.core.jobs import job_chain_start, job_enqueue

    chain = job_chain_start(kind=JobChunk.Kind.EVALUATION, job_id=evaluation.pk)  # its lease lapses if never sent
    if enqueue:
        job_enqueue("workers.training.advance_evaluation", evaluation_id=evaluation.pk, chain=chain,
                    send_options={"queue": "default", "countdown": settings.RUBRICON_TRAIN_POLL_S})
    return evaluation


def checkpoint_evaluations_resume(*, lapsed_only: bool) -> int:
    """Send again the bookkeeping of running evaluations whose chain lapsed (a lost message, a worker killed between
    steps), or at worker start (`lapsed_only` False) of every running evaluation, each as a new chain that
    supersedes the old (webapp.core.jobs.job_chain_take_over). Returns how many were sent."""
    from webapp.core.jobs import job_chain_take_over, job_enqueue

    sent = 0
    for evaluation_id in CheckpointEvaluation.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True):
        chain = job_chain_take_over(kind=JobChunk.Kind.EVALUATION, job_id=evaluation_id, lapsed_only=lapsed_only)
        if chain is not None:
            job_enqueue("workers.training.advance_evaluation", on_commit=False, evaluation_id=evaluation_id,
                        chain=chain, send_options={"queue": "default"})
            sent += 1
    return sent


def checkpoint_evaluation_fail(*, evaluation_id: int, error: str) -> bool:
    """End a running evaluation as failed, with its reason, and its chain with it (the chain's steps kept failing).
    False when it had already finished."""
    with transaction.atomic():
        failed = job_fail(model=CheckpointEvaluation, job_id=evaluation_id, error=error)
        job_chain_end(kind=JobChunk.Kind.EVALUATION, job_id=evaluation_id)
    return failed


def checkpoint_evaluation_advance(*, evaluation_id: int, enqueue: bool = True) -> bool:
    """Judge each side once its rollouts are generated; finish when both are scored. True while there is more to
    wait for. Safe to call from several places at once (row lock) and again after it finished."""
    from webapp.judging.services import judge_job_create

    with transaction.atomic():
        evaluation = (
            CheckpointEvaluation.objects.select_for_update(of=("self",))
            .select_related("run__project", "run__rubric_version", "run__judge_endpoint", "base_job",
                            "checkpoint_job", "base_judge_job", "checkpoint_judge_job")
            .filter(pk=evaluation_id).first()
        )
        if evaluation is None or evaluation.status in JobStatus.finished():
            return False
        run = evaluation.run
        error = ""
        for side, job_field, judge_field in (("base model", "base_job", "base_judge_job"),
                                             ("checkpoint", "checkpoint_job", "checkpoint_judge_job")):
            job: GenerationJob = getattr(evaluation, job_field)
            judge: JudgeJob | None = getattr(evaluation, judge_field)
            if job.status in _FAILED:
                error = f"Generating with the {side} (job #{job.pk}) {job.status}: {job.error or 'no reason given'}"
                break
            if judge is not None and judge.status in _FAILED:
                error = f"Scoring the {side} rollouts (judge job #{judge.pk}) {judge.status}: {judge.error or '—'}"
                break
            if job.status != JobStatus.SUCCEEDED or judge is not None:
                continue
            if side == "base model":  # an evaluation sharing this base job may have scored it already
                shared = (CheckpointEvaluation.objects.filter(base_job=job, base_judge_job__isnull=False)
                          .exclude(base_judge_job__status__in=_FAILED).values_list("base_judge_job", flat=True).first())
                judge = JudgeJob.objects.get(pk=shared) if shared else None
            if judge is None:
                try:
                    judge = judge_job_create(project=run.project, rubric_version=run.rubric_version,
                                             endpoint=run.judge_endpoint, selection={"job": job.pk},
                                             created_by=evaluation.created_by, enqueue=enqueue)
                except ApplicationError as problem:
                    error = f"Scoring the {side} rollouts: {problem.message}"
                    break
            setattr(evaluation, judge_field, judge)
            evaluation.save(update_fields=[judge_field])
        judges = (evaluation.base_judge_job, evaluation.checkpoint_judge_job)
        stages = (evaluation.base_job, evaluation.checkpoint_job, *judges)
        if (done := sum(1 for j in stages if j is not None and j.status == JobStatus.SUCCEEDED)) > evaluation.done:
            job_progress(model=CheckpointEvaluation, job_id=evaluation.pk, done=done - evaluation.done)
        if error or all(j is not None and j.status == JobStatus.SUCCEEDED for j in judges):
            job_finish(model=CheckpointEvaluation, job_id=evaluation.pk,
                       status=JobStatus.FAILED if error else JobStatus.SUCCEEDED, error=error[:4000])
            # In the same transaction: a reader that sees the evaluation finished sees its chain ended.
            job_chain_end(kind=JobChunk.Kind.EVALUATION, job_id=evaluation.pk)
            return False
    return True
