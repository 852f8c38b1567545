"""webapp.core.jobs.job_enqueue: the one way services send work to the Celery layer (by task name)."""

from __future__ import annotations

import socket

import pytest
from celery import current_app

from webapp.core.jobs import job_enqueue
from webapp.core.models import WorkerHeartbeat


def test_the_default_celery_app_is_the_projects_in_every_thread():
    import threading

    seen = []
    thread = threading.Thread(target=lambda: seen.append(current_app.main))
    thread.start()
    thread.join()
    # Celery's current app is per thread; a web thread must not fall back to an unconfigured app (amqp://localhost).
    assert seen == ["rubricon"]
    assert current_app.conf.broker_url.startswith("redis://")


@pytest.mark.django_db
def test_a_task_is_sent_only_once_the_transaction_commits(eager_celery, django_capture_on_commit_callbacks):
    rows = WorkerHeartbeat.objects.filter(hostname=socket.gethostname(), queue="judge")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job_enqueue("workers.system.heartbeat", queue="judge", send_options={"queue": "judge"})
    assert not rows.exists()
    for callback in callbacks:
        callback()
    assert rows.exists()


@pytest.mark.django_db
def test_without_on_commit_the_task_is_sent_at_once(eager_celery):
    job_enqueue("workers.system.heartbeat", on_commit=False, queue="rollout", send_options={"queue": "rollout"})
    assert WorkerHeartbeat.objects.filter(hostname=socket.gethostname(), queue="rollout").exists()


def test_task_routes_pick_the_queue_by_name():
    app = current_app._get_current_object()
    assert app.amqp.router.route({}, "workers.judging.start_judge_job")["queue"].name == "judge"
    assert app.amqp.router.route({}, "workers.generation.endpoint_check")["queue"].name == "rollout"
    assert app.amqp.router.route({"queue": "default"}, "workers.training.advance_evaluation")["queue"].name == "default"


# -- leases -----------------------------------------------------------------------------------------------------


def _chunk(job_id: int = 424242):
    from webapp.core.jobs import job_chunks_plan

    job_chunks_plan(kind="judge", job_id=job_id, item_ids=[1, 2, 3], size=3)
    return {"kind": "judge", "job_id": job_id, "index": 0}


@pytest.mark.django_db
def test_a_chunk_held_by_a_live_worker_cannot_be_claimed_until_its_lease_lapses():
    from django.db import transaction
    from django.utils import timezone

    from webapp.core.jobs import job_chunk_claim, job_chunk_claim_done, job_chunk_renew
    from webapp.core.models import JobChunk

    chunk = _chunk()
    first = job_chunk_claim(**chunk)
    assert first is not None and first.item_ids == [1, 2, 3]
    assert job_chunk_claim(**chunk) is None  # a second delivery while the first worker lives
    assert job_chunk_renew(lease=first)

    # The first worker died: its lease lapses (as time would make it), and the next delivery takes the chunk over.
    JobChunk.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    second = job_chunk_claim(**chunk)
    assert second is not None and second.token != first.token
    assert not job_chunk_renew(lease=first)  # the old holder learns it lost the chunk
    with transaction.atomic():
        assert not job_chunk_claim_done(lease=first)  # ... and cannot store its results over the new holder's
    with transaction.atomic():
        assert job_chunk_claim_done(lease=second)
    row = JobChunk.objects.get(pk=second.pk)
    assert row.done and row.attempts == 2 and not row.leased_by and row.lease_expires_at is None
    assert job_chunk_claim(**chunk) is None  # done chunks are never claimed again


@pytest.mark.django_db(transaction=True)
def test_of_many_simultaneous_deliveries_exactly_one_claims_the_chunk():
    import threading

    from django.db import connection

    from webapp.core.jobs import job_chunk_claim

    chunk = _chunk()
    barrier = threading.Barrier(6)
    won = []

    def deliver():
        try:
            barrier.wait()
            won.append(job_chunk_claim(**chunk))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 6 and sum(lease is not None for lease in won) == 1


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_renewing_the_lease_while_the_chunk_runs(settings):
    import time

    from webapp.core.jobs import job_chunk_claim, job_chunk_lease
    from webapp.core.models import JobChunk

    settings.RUBRICON_JOB_LEASE_S = 1.5
    chunk = _chunk()
    with job_chunk_lease(**chunk) as lease:
        assert lease is not None
        time.sleep(4.0)  # over two lease lengths: only the heartbeat keeps it alive
        assert job_chunk_claim(**chunk) is None
    row = JobChunk.objects.get(pk=lease.pk)
    assert not row.done and row.leased_by == lease.token  # not finished: the lease simply lapses now
    deadline = time.monotonic() + 2.0  # as long as it was slept before, now polled: it ends when the lease lapses
    claim = job_chunk_claim(**chunk)
    while claim is None and time.monotonic() < deadline:
        time.sleep(0.1)
        claim = job_chunk_claim(**chunk)
    assert claim is not None


@pytest.mark.django_db
def test_a_chunk_whose_run_raises_is_released_at_once():
    from webapp.core.jobs import job_chunk_claim, job_chunk_lease

    chunk = _chunk()
    with pytest.raises(RuntimeError), job_chunk_lease(**chunk) as lease:
        assert lease is not None
        raise RuntimeError("the judge server is down")
    assert job_chunk_claim(**chunk) is not None


def test_chunks_cut_on_group_boundaries_only():
    from webapp.core.jobs import _batched_by_group

    items = [(i, f"g{i // 7}") for i in range(70)]  # ten groups of 7
    batches = list(_batched_by_group(items, 64))
    assert [len(b) for b in batches] == [63, 7]
    batch_of = {i: n for n, batch in enumerate(batches) for i in batch}
    assert all(len({batch_of[i] for i in range(g * 7, g * 7 + 7)}) == 1 for g in range(10))
    # Rollouts without a group are units of one; a group bigger than a chunk is a chunk of its own.
    assert list(_batched_by_group([(1, ""), (2, ""), (3, None)], 2)) == [[1, 2], [3]]
    assert list(_batched_by_group([(1, "a"), (2, "b"), (3, "b"), (4, "b"), (5, "c")], 2)) == [[1], [2, 3, 4], [5]]
    assert list(_batched_by_group([], 64)) == []


def test_job_outcome_words():
    from types import SimpleNamespace

    from webapp.core.jobs import job_outcome

    assert job_outcome(SimpleNamespace(status="succeeded", failed_count=0)) == "succeeded"
    assert job_outcome(SimpleNamespace(status="succeeded", failed_count=3)) == "succeeded with 3 failed"
    assert job_outcome(SimpleNamespace(status="failed", failed_count=3)) == "failed"
    assert job_outcome(SimpleNamespace(status="running")) == "running"
