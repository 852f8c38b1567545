"""Bookkeeping: worker heartbeats (the workers page and the overview show them) and the lapsed-lease check.

Each worker process runs a heartbeat thread (started at worker_ready) that writes, every RUBRICON_WORKER_HEARTBEAT_S,
one row per queue it consumes with what it runs now, read from Celery's own registry of active requests
(`celery.worker.state.active_requests`, kept by the worker's main process for every pool: threads, prefork, solo).
A thread rather than a beat task or Celery events: a beat task needs a `celery beat` process (embedded mode has
none) and reaches one worker per queue, not each worker; events and `inspect` need broadcast, which the embedded
mode's filesystem broker lacks, and would make each page view wait on the workers. A worker that stops cleanly
removes its rows; a killed one stops beating and the page marks it stale.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown

logger = logging.getLogger(__name__)

# Tasks that work for a job: the job kind, the keyword naming its id, and the one naming its chunk.
JOB_TASKS: dict[str, tuple[str, str, str | None]] = {
    "workers.judging.start_judge_job": ("judge", "job_id", None),
    "workers.judging.judge_chunk": ("judge", "job_id", "index"),
    "workers.generation.start_generation_job": ("generation", "job_id", None),
    "workers.generation.generation_chunk": ("generation", "job_id", "index"),
    "workers.training.launch_run": ("run", "run_id", None),
    "workers.training.monitor_run": ("run", "run_id", None),
    "workers.training.advance_evaluation": ("evaluation", "evaluation_id", None),
    "workers.exports.run_export": ("export", "export_id", None),
    "workers.judging.rubric_preview": ("rubric tool job", "job_id", None),
    "workers.judging.rubric_dry_run": ("rubric tool job", "job_id", None),
    "workers.generation.draft_rubric": ("rubric tool job", "job_id", None),
    "workers.generation.endpoint_check": ("endpoint check", "check_id", None),
    "workers.judging.position_check": ("position check", "job_id", None),
}


@shared_task(name="workers.system.heartbeat", bind=True, ignore_result=True)
def heartbeat(self, *, queue: str) -> None:
    """Record that a worker consuming `queue` is alive. Send it to a queue to check that queue is served."""
    from webapp.core.services import worker_heartbeat_record

    worker_heartbeat_record(hostname=self.request.hostname or socket.gethostname(), queue=queue, checked=True)


def running_now() -> list[dict[str, Any]]:
    """What this worker runs now: one entry per active task, naming its job where it has one."""
    from celery.worker import state

    for _ in range(3):
        try:
            requests = list(state.active_requests)
            break
        except RuntimeError:  # the set changed while it was copied
            continue
    else:
        return []
    running = []
    for request in requests:
        kwargs = request.kwargs if isinstance(request.kwargs, dict) else {}
        entry: dict[str, Any] = {"task": request.name}
        kind = JOB_TASKS.get(request.name)
        if kind is not None and isinstance(kwargs.get(kind[1]), int):
            entry.update(kind=kind[0], id=kwargs[kind[1]])
            if kind[2] is not None and isinstance(kwargs.get(kind[2]), int):
                entry["chunk"] = kwargs[kind[2]]
        started = getattr(request, "time_start", None)
        if started:
            entry["since"] = float(started)  # wall-clock seconds (Celery sets it when the task was accepted)
        running.append(entry)
    return sorted(running, key=lambda e: (e.get("kind", ""), e.get("id", 0), e.get("chunk", -1), e["task"]))


def _beat_forever(consumer: Any, hostname: str) -> None:
    from django.conf import settings
    from django.db import close_old_connections
    from django.utils import timezone

    from webapp.core.services import worker_heartbeat_beat

    started_at = timezone.now()
    while True:
        try:
            queues = sorted(consumer.app.amqp.queues.consume_from)  # a train worker adds its host's queue later
            worker_heartbeat_beat(hostname=hostname, queues=queues, running=running_now(), started_at=started_at)
        except Exception:  # the database may be down for a while; the next beat tries again
            logger.exception("The worker heartbeat failed")
        close_old_connections()
        time.sleep(settings.RUBRICON_WORKER_HEARTBEAT_S)


@worker_ready.connect
def _announce(sender, **kwargs) -> None:
    threading.Thread(target=_beat_forever, args=(sender, sender.hostname), name="worker-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _forget(sender, **kwargs) -> None:
    from webapp.core.services import worker_heartbeat_forget

    try:
        worker_heartbeat_forget(hostname=sender.hostname)
    except Exception:
        logger.exception("Could not remove this worker's heartbeat")


def _resume(queues: set[str], *, lapsed_only: bool) -> int:
    """Send again the chunks of running jobs that no live worker holds (see webapp.core.jobs.job_resume), and the
    bookkeeping of evaluations whose chain lapsed (job_chain_take_over)."""
    from webapp.core.models import JobStatus
    from webapp.judging.models import JudgeJob
    from webapp.judging.services import judge_job_resume
    from webapp.rollouts.models import GenerationJob
    from webapp.rollouts.services import generation_job_resume
    from webapp.runs.services import checkpoint_evaluations_resume

    sent = 0
    if "judge" in queues:
        for job in JudgeJob.objects.filter(status=JobStatus.RUNNING):
            sent += judge_job_resume(job=job, lapsed_only=lapsed_only)
    if "rollout" in queues:
        for job in GenerationJob.objects.filter(status=JobStatus.RUNNING):
            sent += generation_job_resume(job=job, lapsed_only=lapsed_only)
    if "default" in queues:  # a checkpoint evaluation's bookkeeping chain, re-enqueuing itself on `default`
        sent += checkpoint_evaluations_resume(lapsed_only=lapsed_only)
    return sent


@worker_ready.connect
def _resume_interrupted_jobs(sender, **kwargs) -> None:
    """A worker that was killed left chunks unfinished; send again those whose lease lapsed or that were never
    claimed (a chunk another live worker is running keeps its lease and is left alone). Then keep checking for
    lapsed leases every RUBRICON_JOB_LEASE_S, so a worker killed later is noticed without a restart."""
    queues = set(sender.app.amqp.queues.consume_from)
    _resume(queues, lapsed_only=False)
    threading.Thread(target=_check_lapsed_leases, args=(queues,), name="lease-check", daemon=True).start()


def _check_lapsed_leases(queues: set[str]) -> None:
    from django.conf import settings
    from django.db import close_old_connections

    logger = logging.getLogger(__name__)
    while True:
        time.sleep(settings.RUBRICON_JOB_LEASE_S)
        try:
            if sent := _resume(queues, lapsed_only=True):
                logger.info("Sent again %d chunk(s) whose worker stopped renewing its lease.", sent)
        except Exception:  # the database may be down for a while; the next check tries again
            logger.exception("The lapsed-lease check failed")
            close_old_connections()


@worker_shutdown.connect  # thread/solo pools: the backends live in the main process
@worker_process_shutdown.connect  # prefork: in each child
def _close_model_backends(**kwargs) -> None:
    """Stop cached model engines; a vLLM engine core left behind keeps its memory (and GPU) after the worker exits."""
    from webapp.rollouts.engines import backends_close_all

    backends_close_all()
