from __future__ import annotations

import socket
import time

import pytest

from webapp.core.jobs import job_enqueue
from webapp.core.models import WorkerHeartbeat
from workers.celery import QUEUES, app


def test_celery_is_configured_for_safe_long_jobs():
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.task_acks_late is True and conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert {q.name for q in conf.task_queues} == set(QUEUES) == {"default", "judge", "rollout", "train"}
    # Redis redelivers unacknowledged work after the visibility timeout: it must exceed the longest chunk.
    assert conf.broker_transport_options["visibility_timeout"] >= 3600
    assert app.amqp.router.route({}, "workers.judging.score_chunk")["queue"].name == "judge"
    assert app.amqp.router.route({}, "workers.generation.generate_chunk")["queue"].name == "rollout"
    assert app.amqp.router.route({}, "workers.training.launch_run")["queue"].name == "train"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_task_sent_through_redis_is_run_by_a_real_worker_and_written_to_postgres(celery_worker_process):
    from django.utils import timezone

    sent_at = timezone.now()
    for queue in QUEUES:  # sent the way services send: by name, through webapp.core.jobs
        job_enqueue("workers.system.heartbeat", on_commit=False, queue=queue, send_options={"queue": queue})
    deadline = time.monotonic() + 30
    # Rows of the worker's node name, marked by the task (its periodic beat writes seen_at, not checked_at).
    rows = WorkerHeartbeat.objects.filter(hostname=f"{celery_worker_process.name}@{socket.gethostname()}",
                                          checked_at__gte=sent_at)
    while set(rows.values_list("queue", flat=True)) != set(QUEUES):
        assert time.monotonic() < deadline, celery_worker_process.log()
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_test_leaves_the_session_worker_quiet_before_its_tables_are_flushed(celery_worker_process):
    """pytest-django truncates every table after a transactional test. A judge job a test had started (through the
    API, without waiting for it) still ran in the session worker then: its writes deadlocked the TRUNCATE and failed
    the test's teardown. Before any teardown, `quiesce_session_worker` waits until that worker runs nothing and drops
    what the test left queued; after it, nothing the test started writes any more."""
    from tests.conftest import quiesce_session_worker
    from tests.factories import EndpointFactory
    from tests.support.judge_server import StubChatServer
    from tests.workers.test_judging_e2e import make_rollouts
    from webapp.judging import services
    from webapp.judging.models import CriterionScore

    project, version, _ = make_rollouts(8)
    with StubChatServer(latency_s=0.5) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url, max_concurrency=1)
        services.judge_job_create(project=project, rubric_version=version, endpoint=endpoint)  # ~4 s of calls
        deadline = time.monotonic() + 60
        while server.stats["requests"] == 0:  # the worker is inside the job
            assert time.monotonic() < deadline, celery_worker_process.log()
            time.sleep(0.05)
        quiesce_session_worker()
        scores, calls = CriterionScore.objects.count(), server.stats["requests"]
        time.sleep(1.5)  # three calls' worth
        assert (CriterionScore.objects.count(), server.stats["requests"]) == (scores, calls)
        replies = app.control.inspect(destination=[celery_worker_process.node], timeout=5).active()
        assert replies == {celery_worker_process.node: []}
