"""An endpoint's max_concurrency holds across the whole cluster (issue 17 item 4): two real Celery worker processes
with two threads each judge one job against a local server that counts requests in flight; and a killed holder's
slots come back once its lease lapses."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import redis

from tests.conftest import REPO_ROOT
from tests.factories import EndpointFactory
from tests.support.judge_server import StubChatServer
from tests.workers.test_judging_e2e import make_rollouts, wait_for
from webapp.core.models import JobStatus
from webapp.endpoints.limits import RedisLimits, limits_key
from webapp.judging import services

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_workers_never_exceed_the_endpoints_max_concurrency(start_worker, settings, private_broker):
    project, version, rollouts = make_rollouts(64)
    settings.RUBRICON_JUDGE_CHUNK_SIZE = 4  # 16 chunks over 4 worker threads, each chunk its own client
    env = {"CELERY_BROKER_URL": private_broker, "RUBRICON_JUDGE_CHUNK_SIZE": "4"}
    first = start_worker("limits-a", env, concurrency=2, ready=False)
    second = start_worker("limits-b", env, concurrency=2, ready=False)
    first.wait_ready()  # both boot at once: one start-up of wall time, not two
    second.wait_ready()
    with StubChatServer(latency_s=0.2) as server:  # admits any number: it only counts
        endpoint = EndpointFactory(project=project, base_url=server.base_url, max_concurrency=3)
        job = services.judge_job_create(project=project, rubric_version=version, endpoint=endpoint, enqueue=False)
        from workers.celery import app

        with app.connection(private_broker) as connection:  # the workers' private queues
            app.send_task("workers.judging.start_judge_job", kwargs={"job_id": job.pk}, connection=connection)
        job = wait_for(job, timeout=120, log=lambda: first.log() + second.log())
        stats = dict(server.stats)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.done == 64 and stats["requests"] == 64
    # Both workers judged chunks, so the limit was shared between processes, not held by one.
    for worker in (first, second):
        log = worker.log_path.read_text(errors="replace")
        assert "workers.judging.judge_chunk[" in log and "succeeded" in log, log[-3000:]
    # Per client it would be up to 4 threads x 3 = 12 in flight; shared, never more than 3 (and 3 were used).
    assert stats["max_in_flight"] <= 3
    assert stats["max_in_flight"] >= 2
    assert RedisLimits(client=redis.Redis.from_url(private_broker), key=limits_key(endpoint), ttl_s=1,
                       max_concurrency=3).in_flight() == 0  # every slot given back


HOLDER = """
import sys, time, django
django.setup()
import redis
from webapp.endpoints.limits import RedisLimits
limits = RedisLimits(client=redis.Redis.from_url(sys.argv[1]), key=sys.argv[2], ttl_s=1.0, max_concurrency=3)
assert limits._slot_try() and limits._slot_try()
print("held", flush=True)
time.sleep(600)
"""


def test_a_killed_holders_slots_come_back_once_its_lease_lapses(private_broker):
    key = f"test-limits-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.test"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, private_broker, key], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        ours = RedisLimits(client=redis.Redis.from_url(private_broker), key=key, ttl_s=1.0, max_concurrency=3)
        time.sleep(2.5)  # more than two lease lengths: a live holder renews, its slots stay its own
        assert ours.in_flight() == 2
        assert ours._slot_try() and not ours._slot_try()
        holder.kill()  # kill -9: it never releases
        holder.wait(10)
        assert not ours._slot_try()  # its lease has not lapsed yet
        started = time.monotonic()
        while not ours._slot_try():
            assert time.monotonic() - started < 5, "the killed holder's slots never came back"
            time.sleep(0.05)
        assert ours._slot_try() and not ours._slot_try()
        assert ours.in_flight() == 3  # all three ours now
        for _ in range(3):
            ours.slot_release()
        assert ours.in_flight() == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)


def test_requests_per_minute_are_one_budget_for_every_process(private_broker):
    """Two limiters (as two workers would hold) book one Redis budget: a minute's burst between them, then paced."""
    import asyncio

    key = f"test-rpm-{os.getpid()}-{time.monotonic_ns()}"
    one, two = (RedisLimits(client=redis.Redis.from_url(private_broker), key=key, ttl_s=5, max_concurrency=8,
                            requests_per_minute=120) for _ in range(2))

    async def main() -> tuple[float, float]:
        started = time.monotonic()
        for _ in range(60):
            await one.rate_acquire(0)
            await two.rate_acquire(0)
        burst = time.monotonic() - started
        await two.rate_acquire(0)  # the 121st request of the minute waits for half a second's refill
        return burst, time.monotonic() - started - burst

    burst, paced = asyncio.run(main())
    assert burst < 0.5
    assert 0.35 < paced < 0.75
