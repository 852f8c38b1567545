"""The one job lifecycle (webapp.core.jobs): the status machine refuses illegal transitions, the outcome is derived
from the counts, and progress inside a chunk is batched, counted once, and taken back when the chunk changes hands."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import GenerationJobFactory
from webapp.core.jobs import (
    TRANSITIONS,
    IllegalTransition,
    JobProgress,
    job_cancel,
    job_chunk_claim,
    job_chunk_claim_done,
    job_chunk_progress,
    job_chunks_plan,
    job_fail,
    job_finish,
    job_progress,
    job_progress_view,
    job_start,
    job_state_changed,
    job_state_key,
    job_transition_check,
)
from webapp.core.models import JobChunk, JobStatus
from webapp.endpoints.models import EndpointCheck
from webapp.exports.models import Export
from webapp.judging.models import JudgeJob
from webapp.reviews.models import PositionCheckJob
from webapp.rollouts.models import GenerationJob
from webapp.rubrics.models import RubricToolJob
from webapp.runs.models import CheckpointEvaluation, TrainingRun

ALL = [s.value for s in JobStatus]


def test_every_job_kind_shares_the_one_lifecycle():
    from webapp.core.models import Job

    for model in (GenerationJob, JudgeJob, Export, RubricToolJob, EndpointCheck, TrainingRun, CheckpointEvaluation,
                  PositionCheckJob):
        assert issubclass(model, Job), model
        names = {f.name for f in model._meta.get_fields()}
        assert {"status", "total", "done", "failed_count", "error", "started_at", "finished_at",
                "cancel_requested_at"} <= names, model


@pytest.mark.parametrize("current", ALL)
@pytest.mark.parametrize("target", ALL)
def test_the_status_machine(current, target):
    legal = {("pending", "running"), ("pending", "failed"), ("pending", "cancelled"),
             ("running", "succeeded"), ("running", "failed"), ("running", "cancelled")}
    if (current, target) in legal:
        job_transition_check(current, target)
        assert target in TRANSITIONS[current]
    else:
        with pytest.raises(IllegalTransition):
            job_transition_check(current, target)


@pytest.mark.django_db
def test_illegal_transitions_are_refused_in_the_database():
    job = GenerationJobFactory()
    assert not job_finish(model=GenerationJob, job_id=job.pk)  # pending cannot finish: it never ran
    assert job_start(model=GenerationJob, job_id=job.pk, total=4)
    assert not job_start(model=GenerationJob, job_id=job.pk)  # a second delivery does not start it again
    assert job_finish(model=GenerationJob, job_id=job.pk)
    job.refresh_from_db()
    started, finished = job.started_at, job.finished_at
    assert job.status == JobStatus.SUCCEEDED and started <= finished
    # Finished is final: no cancel, no fail, no restart, no second finish; nothing about it changes.
    assert not job_cancel(model=GenerationJob, job_id=job.pk)
    assert not job_fail(model=GenerationJob, job_id=job.pk, error="late")
    assert not job_start(model=GenerationJob, job_id=job.pk)
    assert not job_finish(model=GenerationJob, job_id=job.pk, status=JobStatus.FAILED)
    assert not job_progress(model=GenerationJob, job_id=job.pk, done=1)
    job.refresh_from_db()
    assert (job.status, job.error, job.done, job.finished_at) == (JobStatus.SUCCEEDED, "", 0, finished)
    with pytest.raises(IllegalTransition):
        job_finish(model=GenerationJob, job_id=job.pk, status=JobStatus.RUNNING)


@pytest.mark.django_db
def test_cancel_stops_a_pending_job_and_a_running_one_or_asks_the_worker():
    pending, running = GenerationJobFactory(), GenerationJobFactory()
    job_start(model=GenerationJob, job_id=running.pk)
    assert job_cancel(model=GenerationJob, job_id=pending.pk) and job_cancel(model=GenerationJob, job_id=running.pk)
    for job in (pending, running):
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELLED and job.cancel_requested_at and job.finished_at
    assert not job_start(model=GenerationJob, job_id=pending.pk)  # a cancelled job never starts

    waits = GenerationJobFactory()
    job_start(model=GenerationJob, job_id=waits.pk)
    assert job_cancel(model=GenerationJob, job_id=waits.pk, wait_for_worker=True)
    assert not job_cancel(model=GenerationJob, job_id=waits.pk, wait_for_worker=True)  # asked once
    waits.refresh_from_db()
    assert waits.status == JobStatus.RUNNING and waits.cancel_requested_at and waits.finished_at is None


@pytest.mark.django_db
@pytest.mark.parametrize(("done", "failed", "outcome"), [
    (10, 0, "succeeded"), (10, 3, "succeeded with 3 failed"), (10, 10, "failed"), (0, 0, "succeeded"),
])
def test_finish_derives_the_outcome_from_the_counts(done, failed, outcome):
    from webapp.core.jobs import job_outcome

    job = GenerationJobFactory()
    job_start(model=GenerationJob, job_id=job.pk, total=done)
    job_progress(model=GenerationJob, job_id=job.pk, done=done, failed=failed)
    assert job_finish(model=GenerationJob, job_id=job.pk)
    job.refresh_from_db()
    assert job_outcome(job) == outcome
    assert ("All 10 items failed" in job.error) == (outcome == "failed")


@pytest.mark.django_db
def test_the_progress_view_has_rate_elapsed_eta_and_the_final_duration():
    job = GenerationJobFactory()
    job_start(model=GenerationJob, job_id=job.pk, total=100)
    job_progress(model=GenerationJob, job_id=job.pk, done=25)
    job.refresh_from_db()
    view = job_progress_view(job, now=job.started_at + timezone.timedelta(seconds=10))
    assert (view.done, view.total, view.unit, view.percent, view.live) == (25, 100, "rollouts", 25, True)
    assert view.elapsed_s == 10 and view.rate_per_s == 2.5 and view.eta_s == 30 and view.duration_s is None
    GenerationJob.objects.filter(pk=job.pk).update(finished_at=job.started_at + timezone.timedelta(seconds=40))
    job_finish(model=GenerationJob, job_id=job.pk, finished_at=job.started_at + timezone.timedelta(seconds=40))
    job.refresh_from_db()
    view = job_progress_view(job)
    assert view.finished and view.duration_s == 40 and view.eta_s is None


@pytest.mark.django_db
def test_the_state_key_says_when_dependent_parts_must_re_render():
    job = GenerationJobFactory()
    seen = job_state_key(job, 0)
    assert not job_state_changed(seen, job, 0) and not job_state_changed(None, job, 0)
    assert job_state_changed(seen, job, 1)  # e.g. a checkpoint appeared
    job_start(model=GenerationJob, job_id=job.pk)
    job.refresh_from_db()
    assert job_state_changed(seen, job, 0)


def _running_chunk(**job_fields):
    job = GenerationJobFactory(**job_fields)
    job_start(model=GenerationJob, job_id=job.pk, total=10)
    job_chunks_plan(kind="generation", job_id=job.pk, item_ids=range(10), size=10)
    return job, {"kind": "generation", "job_id": job.pk, "index": 0}


@pytest.mark.django_db(transaction=True)
def test_progress_is_batched_written_from_a_thread_and_counted_once():
    job, chunk = _running_chunk()
    lease = job_chunk_claim(**chunk)
    with CaptureQueriesContext(connection) as in_work, JobProgress(lease=lease, interval_s=0.3) as progress:
        for _ in range(7):
            progress.add(1, failed=0)
        progress.add(1, failed=1)
        # The work itself never touched the database ...
        assert len(in_work.captured_queries) == 0
        assert GenerationJob.objects.get(pk=job.pk).done == 0  # ... and nothing is written before the interval
        deadline = time.monotonic() + 5
        while GenerationJob.objects.get(pk=job.pk).done < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert progress.writes == 1  # eight items, one write
    shown = GenerationJob.objects.get(pk=job.pk)
    assert (shown.done, shown.failed_count) == (8, 1)
    # The commit sets the chunk's true count (10 items, 2 failed), counting what progress showed only once.
    from django.db import transaction

    with transaction.atomic():
        assert job_chunk_claim_done(lease=lease, done=10, failed=2)
    shown = GenerationJob.objects.get(pk=job.pk)
    assert (shown.done, shown.failed_count) == (10, 2)


@pytest.mark.django_db(transaction=True)
def test_progress_of_a_chunk_that_changes_hands_is_taken_back_and_a_lost_lease_counts_nothing():
    job, chunk = _running_chunk()
    dead = job_chunk_claim(**chunk)
    assert job_chunk_progress(lease=dead, done=6, failed=1)
    assert GenerationJob.objects.get(pk=job.pk).done == 6
    JobChunk.objects.filter(pk=dead.pk).update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    alive = job_chunk_claim(**chunk)  # the first worker stopped renewing: another claims the chunk
    shown = GenerationJob.objects.get(pk=job.pk)
    assert (shown.done, shown.failed_count) == (0, 0)  # its count was taken back with the claim
    assert not job_chunk_progress(lease=dead, done=4)  # the old holder, still running, counts nothing
    assert job_chunk_progress(lease=alive, done=3)
    assert GenerationJob.objects.get(pk=job.pk).done == 3


@pytest.mark.django_db(transaction=True)
def test_progress_does_not_slow_the_work():
    """add() is a lock and two additions: 100 000 items cost well under a second, whatever the database does."""
    job, chunk = _running_chunk()
    lease = job_chunk_claim(**chunk)
    with JobProgress(lease=lease, interval_s=0.05) as progress:
        started = time.perf_counter()
        threads = [threading.Thread(target=lambda: [progress.add(1) for _ in range(25_000)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    progress.flush()
    assert elapsed < 1.0
    assert GenerationJob.objects.get(pk=job.pk).done == 100_000
