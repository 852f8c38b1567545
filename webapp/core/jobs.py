"""Chunked, resumable jobs: a job's work is split into JobChunk rows; each chunk commits its results and its
`done` flag in one transaction, so redelivered or resumed chunks never write twice."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.db import transaction
from django.db.models import F

from webapp.core.models import JobChunk


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


def job_chunks_plan(*, kind: str, job_id: int, item_ids: Iterable[int], size: int) -> int:
    """Create the job's chunks (idempotent: planning twice creates nothing new). Returns the number of items."""
    chunks, total = [], 0
    for index, ids in enumerate(_batched(item_ids, size)):
        chunks.append(JobChunk(kind=kind, job_id=job_id, index=index, item_ids=ids))
        total += len(ids)
    JobChunk.objects.bulk_create(chunks, batch_size=1000, ignore_conflicts=True)
    return total


def job_chunks_pending(*, kind: str, job_id: int) -> list[int]:
    return list(JobChunk.objects.filter(kind=kind, job_id=job_id, done=False).order_by("index").values_list("index", flat=True))


def job_chunk_items(*, kind: str, job_id: int, index: int) -> list[int] | None:
    """The chunk's item ids, or None when it is already done (a duplicate delivery)."""
    chunk = JobChunk.objects.filter(kind=kind, job_id=job_id, index=index).values("item_ids", "done").first()
    if chunk is None or chunk["done"]:
        return None
    JobChunk.objects.filter(kind=kind, job_id=job_id, index=index).update(attempts=F("attempts") + 1)
    return list(chunk["item_ids"])


def job_chunk_claim_done(*, kind: str, job_id: int, index: int) -> bool:
    """Inside the transaction that writes the chunk's results: lock the chunk and mark it done.
    False means another delivery of the same chunk finished first; the caller must roll back its writes."""
    assert transaction.get_connection().in_atomic_block, "call inside the transaction that writes the results"
    chunk = JobChunk.objects.select_for_update().filter(kind=kind, job_id=job_id, index=index).first()
    if chunk is None or chunk.done:
        return False
    chunk.done = True
    chunk.error = ""
    chunk.save(update_fields=["done", "error", "updated_at"])
    return True


def job_chunk_record_error(*, kind: str, job_id: int, index: int, error: str) -> None:
    JobChunk.objects.filter(kind=kind, job_id=job_id, index=index).update(error=error[:2000])


def job_finish_if_complete(*, model, kind: str, job_id: int) -> bool:
    """Mark a running job succeeded once none of its chunks is left."""
    from django.utils import timezone

    from webapp.core.models import JobStatus

    if JobChunk.objects.filter(kind=kind, job_id=job_id, done=False).exists():
        return False
    return bool(
        model.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            status=JobStatus.SUCCEEDED, finished_at=timezone.now()
        )
    )


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


def job_resume(*, job, kind: str, chunk_task: str) -> int:
    """Re-enqueue the unfinished chunks of a running job (after a worker was killed). Returns how many.
    Chunks still queued get a duplicate message; the duplicate finds its chunk done and does nothing."""
    from webapp.core.errors import ApplicationError
    from webapp.core.models import JobStatus

    if job.status != JobStatus.RUNNING:
        raise ApplicationError(f"Only running jobs can be resumed; this one is {job.status}.")
    pending = job_chunks_pending(kind=kind, job_id=job.pk)
    for index in pending:
        job_enqueue(chunk_task, on_commit=False, job_id=job.pk, index=index)
    return len(pending)
