"""Generation jobs: sample rollouts of a task's examples from a model endpoint, chunked and resumable.

Flow: generation_job_create (web) → workers.generation.start_generation_job plans chunks of examples →
workers.generation.generation_chunk runs episodes for a chunk and bulk-writes its Rollout rows together with the
chunk's done flag, so a chunk delivered twice writes nothing twice (and Rollout(job, example, sample_index) is unique).
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from pydantic import ValidationError

from training.generation import SamplingParams, run_episodes
from webapp.core.errors import ApplicationError
from webapp.core.jobs import (
    ChunkLease,
    JobProgress,
    job_cancel,
    job_chunk_claim_done,
    job_chunk_lease,
    job_chunks_pending,
    job_chunks_plan,
    job_enqueue,
    job_fail,
    job_finish_if_complete,
    job_resume,
    job_spend,
    job_start,
)
from webapp.core.models import JobChunk, JobStatus, Project
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.rollouts.engines import (
    backend_config,
    backend_in_use,
    environment_factory,
    generation_example,
    served_model_check,
)
from webapp.rollouts.models import GenerationJob, Rollout, RolloutSource
from webapp.tasks.models import Example, Task
from webapp.tasks.services import is_verifiers_task

KIND = JobChunk.Kind.GENERATION


def sampling_params(params: dict[str, Any], *, n: int) -> SamplingParams:
    try:
        return SamplingParams(**{**params, "n": n})
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "params"
        raise ApplicationError(f"{field}: {first['msg']}", field=field) from error


def _examples(task: Task, split: str) -> QuerySet[Example]:
    examples = Example.objects.filter(task=task)
    return examples.filter(split=split) if split else examples


@transaction.atomic
def generation_job_create(
    *, project: Project, task: Task, endpoint: ModelEndpoint, split: str = "", params: dict[str, Any] | None = None,
    samples_per_example: int = 1, created_by: Any = None, enqueue: bool = True, model: str | None = None,
    checkpoint: Any = None,  # a runs.Checkpoint (runs sits above rollouts: not imported)
    example_count: int | None = None, example_seed: int = 0,
) -> GenerationJob:
    """`model` (a local directory or 'bundled') or `checkpoint` (a training run's) replaces the endpoint's model;
    the endpoint then only says which local engine loads it. `example_count` samples that many examples of the
    split (seeded by `example_seed`: the same seed and examples give the same sample)."""
    if task.project_id != project.pk or endpoint.project_id != project.pk:
        raise ApplicationError("The task and the endpoint must belong to this project.")
    if checkpoint is not None:
        if checkpoint.run.project_id != project.pk:
            raise ApplicationError("That checkpoint belongs to another project.", field="checkpoint")
        model = checkpoint.path
    if model is not None and endpoint.kind == EndpointKind.OPENAI:
        raise ApplicationError(
            "A checkpoint or local model is loaded by a local engine: choose a vLLM or transformers endpoint.",
            field="endpoint",
        )
    params = dict(params or {})
    sampling_params(params, n=samples_per_example)  # validate now, with a message at the field
    if is_verifiers_task(task):
        if endpoint.kind != EndpointKind.OPENAI:
            served_model_check()  # the worker serves a local endpoint's model with vLLM's OpenAI-compatible server
    else:
        environment_factory(task)  # a broken prompt template or environment fails here, not in a worker
    if not _examples(task, split).exists():
        raise ApplicationError(f"Task {task.name!r} has no examples{f' in split {split!r}' if split else ''}.")
    if example_count is not None and example_count < 1:
        raise ApplicationError("Sample at least one example, or leave the number empty for all.", field="example_count")
    if example_seed < 0:
        raise ApplicationError("The seed is a whole number from 0.", field="example_seed")
    job = GenerationJob.objects.create(
        project=project, task=task, split=split, endpoint=endpoint, model_name=model or endpoint.model, params=params,
        samples_per_example=samples_per_example, created_by=created_by, checkpoint=checkpoint,
        example_count=example_count, example_seed=example_seed,
    )
    if enqueue:
        job_enqueue("workers.generation.start_generation_job", job_id=job.pk)
    return job


def generation_example_ids(*, task: Task, split: str, count: int | None, seed: int) -> list[int]:
    """The examples a job generates for, in id order: all of the split, or a seeded sample of `count` of them."""
    ids = list(_examples(task, split).order_by("pk").values_list("pk", flat=True))
    if count is None or count >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, count))


def generation_job_plan(*, job_id: int) -> list[int]:
    """Claim a pending job and split its examples into chunks; return the chunks still to run (idempotent)."""
    job = GenerationJob.objects.select_related("task").get(pk=job_id)
    if job.status in JobStatus.finished():
        return []
    if job.status == JobStatus.PENDING:
        ids = generation_example_ids(task=job.task, split=job.split, count=job.example_count, seed=job.example_seed)
        examples = job_chunks_plan(kind=KIND, job_id=job.pk, item_ids=iter(ids),
                                   size=max(1, settings.RUBRICON_GENERATION_CHUNK_ROLLOUTS // job.samples_per_example))
        job_start(model=GenerationJob, job_id=job.pk, total=examples * job.samples_per_example)
    pending = job_chunks_pending(kind=KIND, job_id=job.pk)
    if not pending:
        job_finish_if_complete(model=GenerationJob, kind=KIND, job_id=job.pk)
    return pending


def _rollout_row(job: GenerationJob, trajectory: Any, example: Example) -> Rollout:
    data = trajectory.to_dict()
    latency = data.get("latency_ms")
    return Rollout(
        project_id=job.project_id, task_id=job.task_id, example=example, job=job, source=RolloutSource.GENERATION,
        model_name=job.model_name, group_key=f"j{job.pk}-e{example.pk}", sample_index=trajectory.sample_index,
        prompt_messages=trajectory.prompt, messages=trajectory.messages, completion=trajectory.completion,
        prompt_tokens=trajectory.prompt_tokens or None, completion_tokens=trajectory.completion_tokens or None,
        finish_reason=trajectory.finish_reason, latency_ms=round(latency) if latency else None,
        error=trajectory.error or "",
        metadata={"info": data.get("info") or {}, "turns": data.get("turns") or [], "truncated": data.get("truncated"),
                  "error_kind": data.get("error_kind")},
    )


def generation_chunk_run(*, job_id: int, index: int) -> int:
    """Generate one chunk. Returns rollouts written (0 for a duplicate delivery, a chunk another live worker holds, or
    a cancelled job)."""
    job = GenerationJob.objects.select_related("task", "endpoint").get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return 0
    with job_chunk_lease(kind=KIND, job_id=job.pk, index=index) as lease:
        if lease is None:
            return 0
        written = _generation_chunk_write(job, lease)
    job_finish_if_complete(model=GenerationJob, kind=KIND, job_id=job.pk)
    return written


def _generation_chunk_write(job: GenerationJob, lease: ChunkLease) -> int:
    if job.endpoint is None:
        raise ApplicationError("The job's endpoint was deleted.")
    example_ids = lease.item_ids
    examples = {e.pk: e for e in Example.objects.filter(pk__in=example_ids)}
    if is_verifiers_task(job.task):
        raise ApplicationError("This task is backed by a verifiers environment: its chunks run through "
                               "webapp.exports.verifiers_tasks.verifiers_chunk_run.")
    # The model recorded on the job: a checkpoint directory or a local model may replace the endpoint's.
    with backend_in_use(backend_config(job.endpoint, model_override=job.model_name or None)) as backend, \
            JobProgress(lease=lease) as progress:
        # Rollouts are counted on the job as they finish inside the chunk; the commit below sets the true count.
        trajectories = run_episodes(
            backend, environment_factory(job.task),
            [generation_example(examples[i]) for i in example_ids if i in examples],
            sampling_params(job.params, n=job.samples_per_example),
            on_progress=lambda done, failed: progress.add(done, failed=failed),
        )
    # What the model calls spent, booked whether or not this chunk's results are the ones kept.
    job_spend(model=GenerationJob, job_id=job.pk, calls=sum(len(t.turns) for t in trajectories),
              prompt_tokens=sum(turn.prompt_tokens for t in trajectories for turn in t.turns),
              completion_tokens=sum(t.completion_tokens for t in trajectories))
    rows = [_rollout_row(job, t, examples[t.example_id]) for t in trajectories]
    return generation_rows_write(job, lease, rows)


def generation_rows_write(job: GenerationJob, lease: ChunkLease, rows: list[Rollout]) -> int:
    """Write a chunk's rollouts together with its done flag (nothing when another delivery already did)."""
    with transaction.atomic():
        if not job_chunk_claim_done(lease=lease, done=len(rows), failed=sum(1 for r in rows if r.error)):
            return 0
        Rollout.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    return len(rows)


def generation_job_retry(*, job: GenerationJob, created_by: Any = None) -> GenerationJob:
    """Run a finished job again: a new job with the same task, split, model and sampling (a finished job never
    runs again, so its history stays as it was)."""
    if not job.is_finished:
        raise ApplicationError("Only a finished job can be run again; this one is still running.", status=409)
    if job.endpoint is None:
        raise ApplicationError("This job's endpoint was deleted: start a new job with another endpoint.")
    override = job.model_name if job.checkpoint is None and job.model_name != job.endpoint.model else None
    return generation_job_create(
        project=job.project, task=job.task, endpoint=job.endpoint, split=job.split, params=job.params,
        samples_per_example=job.samples_per_example, created_by=created_by, model=override, checkpoint=job.checkpoint,
    )


def generation_job_fail(*, job_id: int, error: str) -> None:
    job_fail(model=GenerationJob, job_id=job_id, error=error)


def generation_job_cancel(*, job: GenerationJob) -> bool:
    return job_cancel(model=GenerationJob, job_id=job.pk)


def generation_job_resume(*, job: GenerationJob, lapsed_only: bool = False) -> int:
    return job_resume(job=job, kind=KIND, chunk_task="workers.generation.generation_chunk", lapsed_only=lapsed_only)
