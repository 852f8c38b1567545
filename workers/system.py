"""Bookkeeping tasks: worker heartbeats, which the dashboard shows as 'workers seen'."""

from __future__ import annotations

import socket

from celery import shared_task
from celery.signals import worker_ready


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
