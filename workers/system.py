"""Bookkeeping tasks: worker heartbeats, which the dashboard shows as 'workers seen'."""

from __future__ import annotations

import socket

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


@worker_ready.connect
def _resume_interrupted_jobs(sender, **kwargs) -> None:
    """A worker that was killed left chunks unfinished; re-enqueue them (chunks that did finish are skipped)."""
    from webapp.core.models import JobStatus
    from webapp.judging.models import JudgeJob
    from webapp.judging.services import judge_job_resume
    from webapp.rollouts.models import GenerationJob
    from webapp.rollouts.services import generation_job_resume

    queues = sender.app.amqp.queues.consume_from
    if "judge" in queues:
        for job in JudgeJob.objects.filter(status=JobStatus.RUNNING):
            judge_job_resume(job=job)
    if "rollout" in queues:
        for job in GenerationJob.objects.filter(status=JobStatus.RUNNING):
            generation_job_resume(job=job)


@worker_shutdown.connect  # thread/solo pools: the backends live in the main process
@worker_process_shutdown.connect  # prefork: in each child
def _close_model_backends(**kwargs) -> None:
    """Stop cached model engines; a vLLM engine core left behind keeps its memory (and GPU) after the worker exits."""
    from webapp.rollouts.generation import backends_close_all

    backends_close_all()
