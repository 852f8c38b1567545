"""Judge jobs: score a selection of rollouts with a rubric version (programmatic criteria and LM judges).

Flow: judge_job_create (web) → workers.judging.start_judge_job plans chunks → workers.judging.judge_chunk per chunk
→ judge_chunk_run scores and writes CriterionScore/RolloutScore rows and the chunk's done flag in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.db import connection, transaction

from training.judges.base import JudgeCompletion
from training.rubrics.engine import RubricEngine
from training.rubrics.spec import JudgeCriterion
from training.rubrics.types import Rollout as EngineRollout
from training.rubrics.types import RolloutScore as EngineScore
from webapp.core.errors import ApplicationError
from webapp.core.jobs import (
    ChunkLease,
    JobProgress,
    job_cancel,
    job_chunk_claim_done,
    job_chunk_lease,
    job_chunks_pending,
    job_chunks_plan_groups,
    job_enqueue,
    job_fail,
    job_finish_if_complete,
    job_resume,
    job_spend,
    job_start,
)
from webapp.core.models import JobChunk, JobStatus, Project
from webapp.endpoints.models import ModelEndpoint
from webapp.judging.models import PROGRAMMATIC, CriterionScore, JudgeJob, RolloutScore
from webapp.judging.signals import judge_job_scored
from webapp.rollouts.models import Rollout
from webapp.rollouts.selectors import rollout_browse
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.services import rubric_spec_validate

logger = logging.getLogger(__name__)

SCORE_FIELDS = ["job", "raw_choice", "score", "rationale", "raw_response", "prompt_tokens", "completion_tokens",
                "latency_ms", "cached", "error"]


def engine_rollout(rollout: Rollout) -> EngineRollout:
    """A stored rollout as the rubric engine sees it (no ORM object crosses into training/)."""
    example = rollout.example
    return _engine_rollout(
        rollout.completion, rollout.prompt_messages, rollout.messages, rollout.metadata, rollout.completion_tokens,
        rollout.group_key, example is not None, example.prompt if example else None,
        example.answer if example else None, example.info if example else None,
    )


# What _engine_rollout reads, in its order: a chunk loads these columns as tuples (model instances for a chunk's
# 256 rollouts and their examples cost more CPU than its judge calls' parsing).
_ENGINE_ROLLOUT_FIELDS = ("completion", "prompt_messages", "messages", "metadata", "completion_tokens", "group_key",
                          "example_id", "example__prompt", "example__answer", "example__info")


def _engine_rollout(completion: str, prompt_messages: Any, messages: Any, metadata: Any, completion_tokens: int | None,
                    group_key: str, has_example: Any, example_prompt: str | None, example_answer: str | None,
                    example_info: Any) -> EngineRollout:
    prompt_messages = list(prompt_messages or [])
    trajectory = list(messages or [])
    completion_messages = trajectory[len(prompt_messages):] if len(trajectory) > len(prompt_messages) + 1 else None
    info = {**((example_info or {}) if has_example else {}), **(metadata or {}).get("info", {})}
    return EngineRollout(
        completion=completion,
        prompt=(example_prompt if has_example and not prompt_messages else None),
        messages=prompt_messages or None,
        completion_messages=completion_messages,
        reference=example_answer if has_example and example_answer else None,
        info=info,
        completion_tokens=completion_tokens,
        group_id=group_key or None,
    )


def rubric_engine(version: RubricVersion, endpoint: ModelEndpoint | None) -> RubricEngine:
    from webapp.judging.judges import judge_for_endpoint

    spec = rubric_spec_validate(version.spec)
    judge = judge_for_endpoint(endpoint) if (spec.judge_criteria and endpoint is not None) else None
    return RubricEngine(spec, judge=judge, python_allowlist=settings.RUBRICON_PYTHON_REWARD_ALLOWLIST)


@transaction.atomic
def judge_job_create(
    *, project: Project, rubric_version: RubricVersion, endpoint: ModelEndpoint | None = None,
    selection: dict[str, Any] | None = None, created_by: Any = None, enqueue: bool = True,
) -> JudgeJob:
    """Create a job over the rollouts matching `selection` (the rollout browser's filters). `enqueue=False` leaves
    running it to the caller (`manage.py judge --inline`)."""
    if rubric_version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", field="rubric_version")
    if endpoint is not None and endpoint.project_id != project.pk:
        raise ApplicationError("That endpoint belongs to another project.", field="endpoint")
    spec = rubric_spec_validate(rubric_version.spec)
    if spec.judge_criteria and endpoint is None:
        keys = ", ".join(c.key for c in spec.judge_criteria)
        raise ApplicationError(f"This rubric has LM-judge criteria ({keys}); choose a judge endpoint.", field="endpoint")
    selection = dict(selection or {})
    rollouts = rollout_browse(project, filters=selection)
    # Freeze the selection: rollouts created after this moment are not part of the job.
    last = rollouts.order_by("-pk").values_list("pk", flat=True).first()
    if last is None:
        raise ApplicationError("No rollouts match this selection.")
    selection["max_id"] = last
    job = JudgeJob.objects.create(
        project=project, rubric_version=rubric_version, endpoint=endpoint if spec.judge_criteria else None,
        selection=selection, created_by=created_by,
    )
    if enqueue:
        job_enqueue("workers.judging.start_judge_job", job_id=job.pk)
    return job


def judge_job_plan(*, job_id: int) -> list[int]:
    """Claim a pending job, split its selection into chunks; return the chunk indexes still to run.
    Safe to call again (redelivery, resume): planning is idempotent and only unfinished chunks are returned."""
    job = JudgeJob.objects.select_related("project", "rubric_version", "endpoint").get(pk=job_id)
    if job.status in JobStatus.finished():
        return []
    if job.status == JobStatus.PENDING:
        selection = dict(job.selection)
        max_id = selection.pop("max_id", None)
        items = rollout_browse(job.project, filters=selection).order_by("group_key", "pk").values_list("pk", "group_key")
        if max_id is not None:
            items = items.filter(pk__lte=max_id)
        total = job_chunks_plan_groups(kind=JobChunk.Kind.JUDGE, job_id=job.pk, items=items.iterator(),
                                       size=settings.RUBRICON_JUDGE_CHUNK_SIZE)
        engine = rubric_engine(job.rubric_version, job.endpoint)
        job_start(model=JudgeJob, job_id=job.pk, total=total, judge_fingerprint=engine.judge_fingerprint or PROGRAMMATIC)
    pending = job_chunks_pending(kind=JobChunk.Kind.JUDGE, job_id=job.pk)
    if not pending:
        _finish_if_complete(job.pk)
    return pending


def judge_chunk_run(*, job_id: int, index: int) -> int:
    """Score one chunk. Returns the number of rollouts written (0 for a duplicate delivery, a chunk another live
    worker holds, or a cancelled job)."""
    job = JudgeJob.objects.select_related("rubric_version", "endpoint").get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return 0
    with job_chunk_lease(kind=JobChunk.Kind.JUDGE, job_id=job.pk, index=index) as lease:
        if lease is None:
            return 0
        written = _judge_chunk_write(job, lease)
    _finish_if_complete(job.pk)
    return written


class _SpendRecorder:
    """Books each judge call on the job as it ends (not when the chunk commits): a chunk whose worker dies has still
    spent its calls, and a re-run answered from the cache spends nothing. Calls are added up and booked in one
    UPDATE every `flush_s` and at the end of the chunk (one UPDATE per call had serialized the chunk on its thread)."""

    def __init__(self, job_id: int, flush_s: float = 0.05) -> None:
        self.job_id = job_id
        self.flush_s = flush_s
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.cost = Decimal(0)
        self.flusher: asyncio.Task[None] | None = None

    async def __call__(self, completion: JudgeCompletion | None) -> None:
        self.calls += 1
        if completion is not None:
            self.prompt_tokens += completion.prompt_tokens or 0
            self.completion_tokens += completion.completion_tokens or 0
            self.cost += Decimal(str(round(completion.cost_usd or 0.0, 6)))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_s)
        await self._write()

    async def _write(self) -> None:
        calls, prompt, completion, cost = self.calls, self.prompt_tokens, self.completion_tokens, self.cost
        if not calls:
            return
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.cost = Decimal(0)
        await sync_to_async(job_spend)(
            model=JudgeJob, job_id=self.job_id, calls=calls, prompt_tokens=prompt, completion_tokens=completion,
            cost_usd=cost,
        )

    async def flush(self) -> None:
        if self.flusher is not None and not self.flusher.done():
            self.flusher.cancel()
        await self._write()


def _judge_chunk_write(job: JudgeJob, lease: ChunkLease) -> int:
    engine = rubric_engine(job.rubric_version, job.endpoint)
    judge = engine.judge
    recorder = _SpendRecorder(job.pk)
    if judge is not None and hasattr(judge, "on_call"):
        judge.on_call = recorder
    cache = getattr(judge, "cache", None)

    async def score_all(items: list[EngineRollout], on_scored: Callable[[EngineScore], None]) -> list[EngineScore]:
        try:
            return await engine.ascore_many(items, on_scored=on_scored)
        finally:  # what was paid for is booked and cached before the chunk commits (or fails)
            await recorder.flush()
            if cache is not None and hasattr(cache, "flush"):
                await cache.flush()

    started = time.perf_counter()
    loaded = list(Rollout.objects.filter(pk__in=lease.item_ids).order_by("pk")
                  .values_list("pk", "error", *_ENGINE_ROLLOUT_FIELDS))
    scorable = [(pk, _engine_rollout(*fields)) for pk, error, *fields in loaded if not error]
    failed_rollouts = [(pk, error) for pk, error, *_ in loaded if error]
    results: list[EngineScore] = []
    with JobProgress(lease=lease) as progress:
        # Rollouts are counted on the job as their last criterion comes in; the commit below sets the true count.
        if failed_rollouts:
            progress.add(len(failed_rollouts), failed=len(failed_rollouts))
        if scorable:
            results = async_to_sync(score_all)(
                [item for _, item in scorable],
                lambda score: progress.add(1, failed=int(score.total is None)),
            )
    scored = time.perf_counter()
    judge_fp = engine.judge_fingerprint or PROGRAMMATIC
    judge_keys = {c.key for c in engine.spec.criteria if isinstance(c, JudgeCriterion)}
    version_id, job_id = job.rubric_version_id, job.pk

    # Rows as tuples in the order of SCORE_COLUMNS / TOTAL_COLUMNS (no model instances: see _scores_write).
    criterion_rows: list[tuple[Any, ...]] = []
    total_rows: list[tuple[Any, ...]] = []
    for (rollout_id, _), score in zip(scorable, results, strict=True):
        for key, result in score.criteria.items():
            judged = key in judge_keys
            criterion_rows.append((
                rollout_id, version_id, key, judge_fp if judged else PROGRAMMATIC, job_id,
                (result.choice or "")[:200], result.score, result.rationale or "",
                result.raw_response or ("" if judged else result.reason),
                result.prompt_tokens or None, result.completion_tokens or None,
                round(result.latency_ms) if result.latency_ms else None, result.cached, result.error or "",
            ))
        total_rows.append((
            rollout_id, version_id, judge_fp, job_id, score.total, score.gated_by or "",
            "" if score.total is not None else (score.reason or "a weighted criterion could not be scored"),
        ))
    for rollout_id, error in failed_rollouts:
        total_rows.append((rollout_id, version_id, judge_fp, job_id, None, "",
                           f"rollout failed, not scored: {error}"[:2000]))

    with transaction.atomic():
        if not job_chunk_claim_done(lease=lease, done=len(total_rows),
                                    failed=sum(1 for row in total_rows if row[4] is None)):
            return 0
        _scores_write(criterion_rows, total_rows)
        # Calls, tokens and cost were booked as calls ended (_SpendRecorder); hits cost nothing.
        job_spend(model=JudgeJob, job_id=job.pk, cache_hits=getattr(judge, "hits", 0))
    # bench/judge_job_throughput.py reads these figures from the worker's log.
    logger.info("judge job %s chunk %s: %d rollouts scored in %.1f ms, written in %.1f ms", job.pk, lease.pk,
                len(total_rows), (scored - started) * 1000, (time.perf_counter() - scored) * 1000)
    return len(total_rows)


# Columns of the rows _judge_chunk_write builds, and the PostgreSQL types they are sent as.
SCORE_COLUMNS = (("rollout_id", "bigint"), ("rubric_version_id", "bigint"), ("criterion_key", "text"),
                 ("judge_fingerprint", "text"), ("job_id", "bigint"), ("raw_choice", "text"), ("score", "float8"),
                 ("rationale", "text"), ("raw_response", "text"), ("prompt_tokens", "integer"),
                 ("completion_tokens", "integer"), ("latency_ms", "integer"), ("cached", "boolean"),
                 ("error", "text"))
TOTAL_COLUMNS = (("rollout_id", "bigint"), ("rubric_version_id", "bigint"), ("judge_fingerprint", "text"),
                 ("job_id", "bigint"), ("total", "float8"), ("gated_by", "text"), ("error", "text"))


def _upsert_sql(model: Any, columns: tuple[tuple[str, str], ...], unique: tuple[str, ...]) -> str:
    names = [name for name, _ in columns]
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in names if name not in unique)
    arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
    return (f"INSERT INTO {model._meta.db_table} ({', '.join(names)}, created_at) "
            f"SELECT *, statement_timestamp() FROM unnest({arrays}) "
            f"ON CONFLICT ({', '.join(unique)}) DO UPDATE SET {updates}")


_SCORE_UPSERT = _upsert_sql(CriterionScore, SCORE_COLUMNS,
                            ("rollout_id", "rubric_version_id", "criterion_key", "judge_fingerprint"))
_TOTAL_UPSERT = _upsert_sql(RolloutScore, TOTAL_COLUMNS, ("rollout_id", "rubric_version_id", "judge_fingerprint"))


def _scores_write(criterion_rows: list[tuple[Any, ...]], total_rows: list[tuple[Any, ...]]) -> None:
    """Upsert a chunk's scores in the caller's transaction (a re-run overwrites its own rows). On PostgreSQL: one
    INSERT … SELECT FROM unnest(arrays) per table, the arrays sent in binary on the Django connection's own psycopg
    connection: building model instances and quoting every value into the SQL text (Django's client-side binding)
    had cost ~11 ms of CPU per 256 rows of each table, and it is ~1 ms this way. Elsewhere (SQLite): bulk_create."""
    if connection.vendor != "postgresql":
        _scores_write_orm(criterion_rows, total_rows)
        return
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        for sql, rows in ((_SCORE_UPSERT, criterion_rows), (_TOTAL_UPSERT, total_rows)):
            if rows:
                cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])


def _scores_write_orm(criterion_rows: list[tuple[Any, ...]], total_rows: list[tuple[Any, ...]]) -> None:
    score_names, total_names = [name for name, _ in SCORE_COLUMNS], [name for name, _ in TOTAL_COLUMNS]
    CriterionScore.objects.bulk_create(
        [CriterionScore(**dict(zip(score_names, row, strict=True))) for row in criterion_rows],
        batch_size=1000, update_conflicts=True, update_fields=SCORE_FIELDS,
        unique_fields=["rollout", "rubric_version", "criterion_key", "judge_fingerprint"],
    )
    RolloutScore.objects.bulk_create(
        [RolloutScore(**dict(zip(total_names, row, strict=True))) for row in total_rows],
        batch_size=1000, update_conflicts=True, update_fields=["job", "total", "gated_by", "error"],
        unique_fields=["rollout", "rubric_version", "judge_fingerprint"],
    )


def _finish_if_complete(job_id: int) -> None:
    if job_finish_if_complete(model=JudgeJob, kind=JobChunk.Kind.JUDGE, job_id=job_id):
        # New scores move judge–human agreement: reviews recomputes its dashboard once here (it listens), not on
        # the next page view.
        judge_job_scored.send(sender=JudgeJob, judge_job_id=job_id)


def judge_job_retry(*, job: JudgeJob, created_by: Any = None) -> JudgeJob:
    """Run a finished job again: a new job with the same rubric version, judge and filters, over the rollouts that
    match them now (answers already in the judge cache are not paid for twice)."""
    if not job.is_finished:
        raise ApplicationError("Only a finished job can be run again; this one is still running.", status=409)
    selection = {k: v for k, v in job.selection.items() if k != "max_id"}
    return judge_job_create(project=job.project, rubric_version=job.rubric_version, endpoint=job.endpoint,
                            selection=selection, created_by=created_by)


def judge_job_fail(*, job_id: int, error: str) -> None:
    job_fail(model=JudgeJob, job_id=job_id, error=error)


def judge_job_cancel(*, job: JudgeJob) -> bool:
    return job_cancel(model=JudgeJob, job_id=job.pk)


def judge_job_resume(*, job: JudgeJob, lapsed_only: bool = False) -> int:
    return job_resume(job=job, kind=JobChunk.Kind.JUDGE, chunk_task="workers.judging.judge_chunk",
                      lapsed_only=lapsed_only)
