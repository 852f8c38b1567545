"""Chunked, resumable jobs: a job's work is split into JobChunk rows; each chunk commits its results and its
`done` flag in one transaction, so redelivered or resumed chunks never write twice.

Leases keep a chunk from running twice at once: a delivery claims the chunk with one conditional UPDATE (not done,
no live lease), and a heartbeat thread renews the lease while the chunk runs. Only chunks whose lease lapsed (their
worker died) are sent again: at worker start and by each worker's periodic check (workers/system.py)."""

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

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Now

from webapp.core.models import JobChunk

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


@dataclass
class ChunkLease:
    """A chunk this process holds: its item ids and the token that proves the lease is still ours."""

    pk: int
    token: str
    item_ids: list[int]


def job_chunk_claim(*, kind: str, job_id: int, index: int) -> ChunkLease | None:
    """Claim the chunk: one conditional UPDATE, so of two deliveries at most one wins. None when the chunk is done
    or another live worker holds it (a duplicate delivery, or a resume while its worker still runs)."""
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    chunks = JobChunk.objects.filter(kind=kind, job_id=job_id, index=index)
    claimed = chunks.filter(_lease_free(), done=False).update(
        leased_by=token, lease_expires_at=_lease_until(), attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    chunk = chunks.values("pk", "item_ids").get()
    return ChunkLease(pk=chunk["pk"], token=token, item_ids=list(chunk["item_ids"]))


def job_chunk_renew(*, lease: ChunkLease) -> bool:
    """Extend the lease; False when it is no longer ours (done, or it lapsed and another worker took it)."""
    return bool(JobChunk.objects.filter(pk=lease.pk, leased_by=lease.token, done=False).update(
        lease_expires_at=_lease_until()))


def job_chunk_release(*, lease: ChunkLease) -> None:
    """Give the chunk up unfinished (the run failed), so a resume may run it at once."""
    JobChunk.objects.filter(pk=lease.pk, leased_by=lease.token, done=False).update(leased_by="", lease_expires_at=None)


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


def job_chunk_claim_done(*, lease: ChunkLease) -> bool:
    """Inside the transaction that writes the chunk's results: lock the chunk and mark it done.
    False means the chunk is done or the lease passed to another worker; the caller must roll back its writes."""
    assert transaction.get_connection().in_atomic_block, "call inside the transaction that writes the results"
    chunk = JobChunk.objects.select_for_update().filter(pk=lease.pk).first()
    if chunk is None or chunk.done or chunk.leased_by != lease.token:
        return False
    chunk.done = True
    chunk.error = ""
    chunk.leased_by = ""
    chunk.lease_expires_at = None
    chunk.save(update_fields=["done", "error", "leased_by", "lease_expires_at", "updated_at"])
    return True


def job_chunk_record_error(*, kind: str, job_id: int, index: int, error: str) -> None:
    JobChunk.objects.filter(kind=kind, job_id=job_id, index=index).update(error=error[:2000])


def job_finish_if_complete(*, model, kind: str, job_id: int) -> bool:
    """End a running job once none of its chunks is left: "failed" when every item failed (each item keeps its
    reason), otherwise "succeeded" — with its failed items counted, which job_outcome shows."""
    from django.utils import timezone

    from webapp.core.models import JobStatus

    if JobChunk.objects.filter(kind=kind, job_id=job_id, done=False).exists():
        return False
    running = model.objects.filter(pk=job_id, status=JobStatus.RUNNING)
    counts = running.values("done", "failed_count").first()
    if counts is None:
        return False
    if counts["done"] and counts["failed_count"] >= counts["done"]:
        error = f"All {counts['done']} items failed; each one's reason is stored with it."
        return bool(running.update(status=JobStatus.FAILED, error=error, finished_at=timezone.now()))
    return bool(running.update(status=JobStatus.SUCCEEDED, finished_at=timezone.now()))


def job_outcome(job) -> str:
    """How the job ended (or where it is): "succeeded", "succeeded with N failed", "failed", "running", ..."""
    failed = getattr(job, "failed_count", 0) or 0
    if job.status == "succeeded" and failed:
        return f"succeeded with {failed} failed"
    return str(job.status)


def job_fail(*, model, job_id: int, error: str) -> None:
    from django.utils import timezone

    from webapp.core.models import JobStatus

    model.objects.filter(pk=job_id, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, error=error[:4000], finished_at=timezone.now()
    )


def job_cancel(*, model, job_id: int) -> bool:
    """Stop a job: chunks not yet started see the status and do nothing; results already written stay."""
    from django.utils import timezone

    from webapp.core.models import JobStatus

    return bool(
        model.objects.filter(pk=job_id, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).update(
            status=JobStatus.CANCELLED, finished_at=timezone.now()
        )
    )


def job_resume(*, job, kind: str, chunk_task: str, lapsed_only: bool = False) -> int:
    """Send again the chunks of a running job that no live worker holds. Returns how many.

    `lapsed_only` (the periodic check): only chunks whose lease lapsed, i.e. whose worker died mid-chunk; each is
    handed back (lease cleared) by one conditional UPDATE, so of several workers checking at once one sends it.
    Otherwise (worker start, `manage.py judge --resume`) also the chunks never claimed, in case their messages were
    lost; a chunk still queued then gets a second message, which finds it claimed or done and does nothing."""
    from webapp.core.errors import ApplicationError
    from webapp.core.models import JobStatus

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
