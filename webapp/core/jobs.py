"""The job engine: one lifecycle for every kind of background job, chunks with leases, and progress you can watch.

Lifecycle (every kind: generation, judge, export, rubric tool job, endpoint check, position-swap check, training
run, checkpoint evaluation — their rows inherit core.models.Job). The status machine is TRANSITIONS below; each change is one
conditional UPDATE from a status allowed to reach the target, so two workers (or a worker and a cancel) never both
win, and a finished job never moves again (a retry is a new job):

    pending ──job_start──► running ──job_finish──► succeeded | "succeeded with N failed" | failed (every item failed)
       │                      ├──job_fail──► failed
       └──job_cancel──► cancelled ◄──job_cancel (a running job's chunks see the status and stop)

Progress is done/total in the kind's unit (`progress_unit`: rollouts, rows, steps), counted as items finish, also
inside a chunk: JobProgress counts in memory and writes at most once per RUBRICON_JOB_PROGRESS_S from a thread, so
the work never waits on the database. Cost (MeteredJob: calls, tokens, cache hits) is booked as calls end.

Chunks: a job's work is split into JobChunk rows; each chunk commits its results and its `done` flag in one
transaction, so redelivered or resumed chunks never write twice. Leases keep a chunk from running twice at once: a
delivery claims the chunk with one conditional UPDATE (not done, no live lease), and a heartbeat thread renews the
lease while the chunk runs. Only chunks whose lease lapsed (their worker died) are sent again: at worker start and
by each worker's periodic check (workers/system.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from webapp.core.errors import ApplicationError
from webapp.core.models import Job, JobChunk, JobStatus

logger = logging.getLogger(__name__)


def job_enqueue(task_name: str, /, *, on_commit: bool = True, send_options: dict[str, Any] | None = None,
                **kwargs: Any) -> None:
    """Send the Celery task `task_name` (e.g. "workers.judging.start_judge_job") with keyword arguments `kwargs`.

    Services enqueue through this one function, by name, so they never import `workers/` (the Celery layer sits on
    top of the apps, as views do). The queue comes from the name-based `task_routes` in workers/celery.py;
    `send_options` (e.g. {"queue": "default", "countdown": 30}) go to Celery as they are. With `on_commit` the
    message leaves only once the caller's transaction commits, so a worker never looks for a row that is not there
    yet (or never will be, after a rollback)."""
    from celery import current_app

    options = dict(send_options or {})

    def send() -> None:
        app = current_app._get_current_object()
        if app.conf.task_always_eager:
            # send_task ignores eager mode: run the registered task in-process instead.
            app.loader.import_default_modules()
            app.tasks[task_name].apply(kwargs=kwargs, **options)
            return
        app.send_task(task_name, kwargs=kwargs, **options)

    if on_commit:
        transaction.on_commit(send)
    else:
        send()


def _batched(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(ids)
    while batch := list(islice(iterator, size)):
        yield batch


def _batched_by_group(items: Iterable[tuple[int, str | None]], size: int) -> Iterator[list[int]]:
    """Batches of at most `size` ids that never split a group (items sorted by group; an empty group key is a group
    of its own). A group larger than `size` is a batch by itself."""
    batch: list[int] = []
    group: list[int] = []
    current: str | None = None
    for pk, key in items:
        if group and (not key or key != current):
            if batch and len(batch) + len(group) > size:
                yield batch
                batch = []
            batch += group
            group = []
        group.append(pk)
        current = key
    if batch and len(batch) + len(group) > size:
        yield batch
        batch = []
    if batch := batch + group:
        yield batch


def _chunks_create(*, kind: str, job_id: int, batches: Iterable[list[int]]) -> int:
    chunks, total = [], 0
    for index, ids in enumerate(batches):
        chunks.append(JobChunk(kind=kind, job_id=job_id, index=index, item_ids=ids))
        total += len(ids)
    JobChunk.objects.bulk_create(chunks, batch_size=1000, ignore_conflicts=True)
    return total


def job_chunks_plan(*, kind: str, job_id: int, item_ids: Iterable[int], size: int) -> int:
    """Create the job's chunks (idempotent: planning twice creates nothing new). Returns the number of items."""
    return _chunks_create(kind=kind, job_id=job_id, batches=_batched(item_ids, size))


def job_chunks_plan_groups(*, kind: str, job_id: int, items: Iterable[tuple[int, str | None]], size: int) -> int:
    """Like job_chunks_plan for (id, group key) pairs sorted by group key: a group is never cut across chunks, so
    group-relative judging always sees a whole group."""
    return _chunks_create(kind=kind, job_id=job_id, batches=_batched_by_group(items, size))


def job_chunks_pending(*, kind: str, job_id: int) -> list[int]:
    return list(JobChunk.objects.filter(kind=kind, job_id=job_id, done=False).order_by("index").values_list("index", flat=True))


def _lease_ttl() -> timedelta:
    return timedelta(seconds=settings.RUBRICON_JOB_LEASE_S)


def _lease_until() -> ExpressionWrapper:
    # The database's clock, not this machine's: workers on several nodes compare leases against one clock.
    return ExpressionWrapper(Now() + _lease_ttl(), output_field=DateTimeField())


def _lease_free() -> Q:
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now())


# ---------------------------------------------------------------------------------------------------------------
# The status machine

TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}),
    # Finished is final: a retry creates a new job, so a job's history never changes after the fact.
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalTransition(ApplicationError):
    """A status change the machine does not allow (e.g. a succeeded job cancelled, a cancelled job started)."""


def job_transition_check(current: str, target: str) -> None:
    """Raise IllegalTransition unless a job in `current` may move to `target`."""
    if target not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"A {current} job cannot become {target}.", status=409)


def _sources(target: str) -> list[str]:
    return [status for status, targets in TRANSITIONS.items() if target in targets]


JobModel = type[Job]


def _move(model: JobModel, job_id: int, target: str, **fields: Any) -> bool:
    """One conditional UPDATE: the row moves to `target` only from a status allowed to reach it."""
    if target in JobStatus.finished():
        fields.setdefault("finished_at", timezone.now())
    return bool(model._default_manager.filter(pk=job_id, status__in=_sources(target)).update(status=target, **fields))


def job_start(*, model: JobModel, job_id: int, **fields: Any) -> bool:
    """pending → running (with `total` and anything else the kind sets at start). False: another delivery already
    started it, or it was cancelled or failed meanwhile."""
    return _move(model, job_id, JobStatus.RUNNING, started_at=timezone.now(), **fields)


def job_progress(*, model: JobModel, job_id: int, done: int = 0, failed: int = 0, **fields: Any) -> bool:
    """Count `done` more items (of which `failed` failed) on a running job, with F() increments so concurrent
    chunks add up. Extra `fields` are set as they are (e.g. an export's absolute row count). False when the job is
    no longer running (cancelled): the caller stops."""
    update: dict[str, Any] = dict(fields)
    if done:
        update["done"] = F("done") + done
    if failed:
        update["failed_count"] = F("failed_count") + failed
    running = model._default_manager.filter(pk=job_id, status=JobStatus.RUNNING)
    return bool(running.update(**update)) if update else running.exists()


def job_spend(*, model: JobModel, job_id: int, calls: int = 0, cache_hits: int = 0, prompt_tokens: int = 0,
              completion_tokens: int = 0, cost_usd: Any = 0) -> None:
    """Book what model calls actually spent on a MeteredJob, whatever its status: a call made is paid even when the
    chunk that made it is lost or the job was cancelled meanwhile. Cache hits are counted apart and cost nothing."""
    update = {name: F(name) + value for name, value in (
        ("calls_made", calls), ("cache_hits", cache_hits), ("prompt_tokens", prompt_tokens),
        ("completion_tokens", completion_tokens), ("cost_usd", cost_usd)) if value}
    if update:
        model._default_manager.filter(pk=job_id).update(**update)


def job_finish(*, model: JobModel, job_id: int, status: str | None = None, error: str = "", **fields: Any) -> bool:
    """running → the end. Without `status` the outcome is derived from the counts: "failed" when every item failed
    (each keeps its reason), otherwise "succeeded" — with its failed items counted, which job_outcome shows. A kind
    whose end is decided elsewhere (a training process's exit) passes `status`; the machine still checks it."""
    if status is None:
        counts = model._default_manager.filter(pk=job_id, status=JobStatus.RUNNING).values("done", "failed_count").first()
        if counts is None:
            return False
        done = fields.get("done", counts["done"])
        failed = fields.get("failed_count", counts["failed_count"])
        if done and failed >= done:
            status, error = JobStatus.FAILED, error or f"All {done} items failed; each one's reason is stored with it."
        else:
            status = JobStatus.SUCCEEDED
    if status not in JobStatus.finished():
        raise IllegalTransition(f"A job cannot finish as {status}.")
    return _move(model, job_id, status, error=error[:8000], **fields)


def job_fail(*, model: JobModel, job_id: int, error: str, **fields: Any) -> bool:
    """pending or running → failed, with a reason the user can act on."""
    return _move(model, job_id, JobStatus.FAILED, error=error[:8000], **fields)


def job_cancel(*, model: JobModel, job_id: int, wait_for_worker: bool = False) -> bool:
    """Stop a job. A pending one is cancelled at once. A running one is cancelled at once too (its chunks check the
    status and stop; results already written stay), unless `wait_for_worker`: then only `cancel_requested_at` is set
    and the worker that owns the process ends it (a training run stops its process first). False when it had
    already finished or a cancel was already asked."""
    now = timezone.now()
    if not wait_for_worker:
        return _move(model, job_id, JobStatus.CANCELLED, cancel_requested_at=now)
    if model._default_manager.filter(pk=job_id, status=JobStatus.PENDING).update(
            status=JobStatus.CANCELLED, cancel_requested_at=now, finished_at=now):
        return True
    return bool(model._default_manager.filter(pk=job_id, status=JobStatus.RUNNING, cancel_requested_at__isnull=True)
                .update(cancel_requested_at=now))


def job_expire_if_stale(job: Job, *, timeout_s: float, error: str) -> Job:
    """A single-call job (tool job, endpoint check) whose worker was killed stays pending/running; past `timeout_s`
    from its creation it is failed with `error`, so its page stops polling and says why."""
    if not job.is_finished and job.created_at < timezone.now() - timedelta(seconds=timeout_s):
        job_fail(model=type(job), job_id=job.pk, error=error)
        job.refresh_from_db()
    return job


def job_outcome(job: Any) -> str:
    """How the job ended (or where it is): "succeeded", "succeeded with N failed", "failed", "running", ..."""
    failed = getattr(job, "failed_count", 0) or 0
    if job.status == "succeeded" and failed:
        return f"succeeded with {failed} failed"
    return str(job.status)


def job_state_key(job: Job, *extra: Any) -> str:
    """What a job page shows that can change besides the counts: status and cancel (plus what the page adds, e.g.
    its checkpoint count). The polling state block sends the key it shows; see job_state_changed."""
    return ":".join(str(part) for part in (job.status, bool(job.cancel_requested_at), *extra))


def job_state_changed(seen: str | None, job: Job, *extra: Any) -> bool:
    """True when a client that shows state `seen` (None: not a poll) is behind: parts of its page outside the state
    block must re-render too (out of band)."""
    return seen is not None and seen != job_state_key(job, *extra)


@dataclass(frozen=True)
class JobProgressView:
    """What the job progress fragment shows: counts, rate, elapsed, ETA while running, duration once finished."""

    done: int
    total: int
    failed: int
    unit: str
    percent: int | None
    elapsed_s: float | None
    rate_per_s: float | None
    eta_s: float | None
    duration_s: float | None
    finished: bool
    live: bool


def job_progress_view(job: Job, *, now: Any = None) -> JobProgressView:
    now = now or timezone.now()
    done, total = int(job.done or 0), int(job.total or 0)
    finished = job.is_finished
    elapsed = duration = rate = eta = None
    if job.started_at is not None:
        end = job.finished_at if finished and job.finished_at else now
        elapsed = max((end - job.started_at).total_seconds(), 0.0)
        if finished:
            duration = elapsed
        if done and elapsed > 0:
            rate = done / elapsed
            if not finished and total > done:
                eta = (total - done) / rate
    return JobProgressView(
        done=done, total=total, failed=int(job.failed_count or 0), unit=type(job).progress_unit,
        percent=min(100, int(100 * done / total)) if total else None, elapsed_s=elapsed, rate_per_s=rate, eta_s=eta,
        duration_s=duration, finished=finished, live=not finished,
    )


# ---------------------------------------------------------------------------------------------------------------
# Chunks and leases


@dataclass
class ChunkLease:
    """A chunk this process holds: its item ids and the token that proves the lease is still ours."""

    pk: int
    token: str
    item_ids: list[int]
    kind: str = ""
    job_id: int = 0


def _chunk_job_model(kind: str) -> JobModel:
    return apps.get_model(JobChunk.JOB_MODELS[JobChunk.Kind(kind)])


def job_chunk_claim(*, kind: str, job_id: int, index: int) -> ChunkLease | None:
    """Claim the chunk: one conditional UPDATE, so of two deliveries at most one wins. None when the chunk is done
    or another live worker holds it (a duplicate delivery, or a resume while its worker still runs).

    Progress an earlier holder counted on the job for this chunk (it died mid-chunk) is taken back in the same
    transaction: the new holder counts the chunk's items again from 0."""
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    chunks = JobChunk.objects.filter(kind=kind, job_id=job_id, index=index)
    with transaction.atomic():
        chunk = chunks.select_for_update().filter(_lease_free(), done=False).values(
            "pk", "item_ids", "progress", "progress_failed").first()
        if chunk is None:
            return None
        JobChunk.objects.filter(pk=chunk["pk"]).update(
            leased_by=token, lease_expires_at=_lease_until(), attempts=F("attempts") + 1, progress=0,
            progress_failed=0)
        if chunk["progress"] or chunk["progress_failed"]:
            _chunk_job_model(kind)._default_manager.filter(pk=job_id).update(
                done=F("done") - chunk["progress"], failed_count=F("failed_count") - chunk["progress_failed"])
    return ChunkLease(pk=chunk["pk"], token=token, item_ids=list(chunk["item_ids"]), kind=kind, job_id=job_id)


def job_chunk_renew(*, lease: ChunkLease) -> bool:
    """Extend the lease; False when it is no longer ours (done, or it lapsed and another worker took it)."""
    return bool(JobChunk.objects.filter(pk=lease.pk, leased_by=lease.token, done=False).update(
        lease_expires_at=_lease_until()))


def job_chunk_release(*, lease: ChunkLease) -> None:
    """Give the chunk up unfinished (the run failed), so a resume may run it at once."""
    JobChunk.objects.filter(pk=lease.pk, leased_by=lease.token, done=False).update(leased_by="", lease_expires_at=None)


def job_chunk_progress(*, lease: ChunkLease, done: int, failed: int = 0) -> bool:
    """Count items that finished inside the chunk on its job, only while the lease is ours: a worker whose lease
    passed to another never counts again (the new holder took its count back at claim)."""
    if not (done or failed):
        return True
    with transaction.atomic():
        if not JobChunk.objects.filter(pk=lease.pk, leased_by=lease.token, done=False).update(
                progress=F("progress") + done, progress_failed=F("progress_failed") + failed):
            return False
        _chunk_job_model(lease.kind)._default_manager.filter(pk=lease.job_id).update(
            done=F("done") + done, failed_count=F("failed_count") + failed)
    return True


class JobProgress:
    """Counts items as they finish and writes the count on the job from a thread, at most once per `interval_s`
    (RUBRICON_JOB_PROGRESS_S): the work calls `add` (a lock and two additions, never the database), so progress
    costs the work nothing and works from inside an event loop (judge calls) or an engine's loop (vLLM).

        with JobProgress(lease=lease) as progress:
            results = run(items, on_item=lambda failed: progress.add(1, failed=int(failed)))

    With a lease, counts go through job_chunk_progress (taken back if the chunk is claimed again); with
    `model`+`job_id`, through job_progress. What is still unwritten when the block ends is left to the caller's
    commit, which sets the final count (job_chunk_claim_done)."""

    def __init__(self, *, lease: ChunkLease | None = None, model: JobModel | None = None, job_id: int | None = None,
                 interval_s: float | None = None) -> None:
        if lease is None and (model is None or job_id is None):
            raise ValueError("JobProgress needs a chunk lease, or a job model and id")
        self.lease, self.model, self.job_id = lease, model, job_id
        self.interval_s = settings.RUBRICON_JOB_PROGRESS_S if interval_s is None else interval_s
        self.writes = 0
        self._pending = [0, 0]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, done: int = 1, *, failed: int = 0) -> None:
        with self._lock:
            self._pending[0] += done
            self._pending[1] += failed

    def flush(self) -> None:
        with self._lock:
            done, failed = self._pending
            self._pending = [0, 0]
        if not (done or failed):
            return
        if self.lease is not None:
            job_chunk_progress(lease=self.lease, done=done, failed=failed)
        else:
            assert self.model is not None and self.job_id is not None
            job_progress(model=self.model, job_id=self.job_id, done=done, failed=failed)
        self.writes += 1

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self.flush()
                except DatabaseError as error:  # progress is advisory; the commit sets the true count
                    logger.warning("Could not write job progress: %s", error)
        finally:
            connections.close_all()  # this thread's connections only

    def __enter__(self) -> JobProgress:
        self._thread = threading.Thread(target=self._run, name="job-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _renew_until(stop: threading.Event, lease: ChunkLease) -> None:
    try:
        while not stop.wait(settings.RUBRICON_JOB_LEASE_S / 3):
            try:
                if not job_chunk_renew(lease=lease):
                    return
            except DatabaseError as error:  # the next beat tries again; a lease that lapses is run again, not lost
                logger.warning("Could not renew the lease of chunk %s: %s", lease.pk, error)
    finally:
        connections.close_all()  # this thread's connections only


@contextmanager
def job_chunk_lease(*, kind: str, job_id: int, index: int) -> Iterator[ChunkLease | None]:
    """Hold the chunk while the block runs: claimed on entry (None: someone else has it or it is done), renewed by a
    heartbeat thread, released if the block raises. The block marks it done with job_chunk_claim_done(lease=...)."""
    lease = job_chunk_claim(kind=kind, job_id=job_id, index=index)
    if lease is None:
        yield None
        return
    stop = threading.Event()
    beat = threading.Thread(target=_renew_until, args=(stop, lease), name=f"lease-{kind}-{job_id}-{index}", daemon=True)
    beat.start()
    try:
        yield lease
    except BaseException:
        job_chunk_release(lease=lease)
        raise
    finally:
        stop.set()
        beat.join(timeout=5)


def job_chunk_claim_done(*, lease: ChunkLease, done: int = 0, failed: int = 0) -> bool:
    """Inside the transaction that writes the chunk's results: lock the chunk, mark it done and set its final count
    on the job (`done` items, `failed` of them failed; what JobProgress already counted is not counted twice).
    False means the chunk is done or the lease passed to another worker; the caller must roll back its writes."""
    assert transaction.get_connection().in_atomic_block, "call inside the transaction that writes the results"
    chunk = JobChunk.objects.select_for_update().filter(pk=lease.pk).first()
    if chunk is None or chunk.done or chunk.leased_by != lease.token:
        return False
    more, more_failed = done - chunk.progress, failed - chunk.progress_failed
    chunk.done = True
    chunk.error = ""
    chunk.leased_by = ""
    chunk.lease_expires_at = None
    chunk.progress, chunk.progress_failed = done, failed
    chunk.save(update_fields=["done", "error", "leased_by", "lease_expires_at", "progress", "progress_failed",
                              "updated_at"])
    if (more or more_failed) and lease.kind:
        _chunk_job_model(lease.kind)._default_manager.filter(pk=lease.job_id).update(
            done=F("done") + more, failed_count=F("failed_count") + more_failed)
    return True


def job_chunk_record_error(*, kind: str, job_id: int, index: int, error: str) -> None:
    JobChunk.objects.filter(kind=kind, job_id=job_id, index=index).update(error=error[:2000])


def job_finish_if_complete(*, model: JobModel, kind: str, job_id: int) -> bool:
    """Finish a running chunked job once none of its chunks is left (job_finish derives the outcome)."""
    if JobChunk.objects.filter(kind=kind, job_id=job_id, done=False).exists():
        return False
    return job_finish(model=model, job_id=job_id)


def job_resume(*, job, kind: str, chunk_task: str, lapsed_only: bool = False) -> int:
    """Send again the chunks of a running job that no live worker holds. Returns how many.

    `lapsed_only` (the periodic check): only chunks whose lease lapsed, i.e. whose worker died mid-chunk; each is
    handed back (lease cleared) by one conditional UPDATE, so of several workers checking at once one sends it.
    Otherwise (worker start, `manage.py judge --resume`) also the chunks never claimed, in case their messages were
    lost; a chunk still queued then gets a second message, which finds it claimed or done and does nothing."""
    if job.status != JobStatus.RUNNING:
        raise ApplicationError(f"Only running jobs can be resumed; this one is {job.status}.")
    chunks = JobChunk.objects.filter(kind=kind, job_id=job.pk, done=False)
    lapsed = chunks.filter(lease_expires_at__lt=Now()).values_list("pk", "index")
    send = [index for pk, index in lapsed
            if chunks.filter(pk=pk, lease_expires_at__lt=Now()).update(leased_by="", lease_expires_at=None)]
    if not lapsed_only:
        send += list(chunks.filter(lease_expires_at__isnull=True).exclude(index__in=send).values_list("index", flat=True))
    for index in sorted(send):
        job_enqueue(chunk_task, on_commit=False, job_id=job.pk, index=index)
    return len(send)


# ---------------------------------------------------------------------------------------------------------------
# Chains: a job advanced by a task that re-enqueues itself (a checkpoint evaluation's bookkeeping). If one message is
# lost (a broker error, a worker killed between steps), nothing would send the next. So the chain holds a lease, as a
# chunk does (a JobChunk at index 0 with no items), renewed at each step; the workers' lapsed-lease check starts a
# new chain for a job whose lease lapsed. Each chain has its own token, carried by its messages: starting a new one
# supersedes the old, whose next message (if it was only late, not lost) finds another token and stops, so a job
# never has two chains.


def _chain_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def job_chain_start(*, kind: str, job_id: int) -> str:
    """Start (or restart) the chain of a job: a fresh token and lease. Returns the token its messages carry."""
    token = _chain_token()
    JobChunk.objects.update_or_create(
        kind=kind, job_id=job_id, index=0,
        defaults={"item_ids": [], "done": False, "leased_by": token, "lease_expires_at": _lease_until()})
    return token


def job_chain_step(*, kind: str, job_id: int, token: str) -> bool:
    """Renew the chain's lease at a step; False when `token` is no longer the job's chain (superseded or ended):
    the message's chain stops there."""
    return bool(JobChunk.objects.filter(kind=kind, job_id=job_id, index=0, done=False, leased_by=token).update(
        lease_expires_at=_lease_until()))


def job_chain_end(*, kind: str, job_id: int) -> None:
    JobChunk.objects.filter(kind=kind, job_id=job_id, index=0).update(done=True, leased_by="", lease_expires_at=None)


def job_chain_take_over(*, kind: str, job_id: int, lapsed_only: bool) -> str | None:
    """A new chain for a running job whose chain lapsed (or, with `lapsed_only` False, at worker start: any chain, or
    one from before chains held leases). One conditional UPDATE, so of several workers checking at once one wins.
    Returns the new token, or None when the chain is alive (or another worker took it over)."""
    token = _chain_token()
    chains = JobChunk.objects.filter(kind=kind, job_id=job_id, index=0)
    held = chains if not lapsed_only else chains.filter(_lease_free(), done=False)  # an ended chain stays ended
    if held.update(done=False, leased_by=token, lease_expires_at=_lease_until()):
        return token
    if chains.exists():
        return None
    return job_chain_start(kind=kind, job_id=job_id)
