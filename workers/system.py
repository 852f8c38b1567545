"""Bookkeeping tasks: worker heartbeats, which the dashboard shows as 'workers seen'."""

from __future__ import annotations

import logging
import socket
import threading
import time

from celery import shared_task
from celery.signals import worker_process_shutdown, worker_ready, worker_shutdown


@shared_task(name="workers.system.heartbeat", ignore_result=True)
def heartbeat(*, queue: str) -> None:
    """Record that a worker consuming `queue` is alive. Send it to a queue to check that queue is served."""
    from webapp.core.services import worker_heartbeat_record

    worker_heartbeat_record(hostname=socket.gethostname(), queue=queue)


@worker_ready.connect
def _announce(sender, **kwargs) -> None:
    from webapp.core.services import worker_heartbeat_record

    for queue in sender.app.amqp.queues.consume_from:
        worker_heartbeat_record(hostname=sender.hostname, queue=queue)


def _resume(queues: set[str], *, lapsed_only: bool) -> int:
    """Send again the chunks of running jobs that no live worker holds (see webapp.core.jobs.job_resume)."""
    from webapp.core.models import JobStatus
    from webapp.judging.models import JudgeJob
    from webapp.judging.services import judge_job_resume
    from webapp.rollouts.models import GenerationJob
    from webapp.rollouts.services import generation_job_resume

    sent = 0
    if "judge" in queues:
        for job in JudgeJob.objects.filter(status=JobStatus.RUNNING):
            sent += judge_job_resume(job=job, lapsed_only=lapsed_only)
    if "rollout" in queues:
        for job in GenerationJob.objects.filter(status=JobStatus.RUNNING):
            sent += generation_job_resume(job=job, lapsed_only=lapsed_only)
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
