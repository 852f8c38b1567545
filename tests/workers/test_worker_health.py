"""Worker health (issue 17 item 3): real Celery worker processes beat every RUBRICON_WORKER_HEARTBEAT_S with their
queues and what they run; the workers page names and links the running job and chunk for members of its project,
marks a killed worker stale, and drops a worker that stopped cleanly."""

from __future__ import annotations

import re
import time

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import EndpointFactory, MembershipFactory, UserFactory
from tests.support.judge_server import Reply, StubChatServer, judge_responder
from tests.workers.test_judging_e2e import make_rollouts
from webapp.core.models import WorkerHeartbeat
from webapp.judging import services

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

BEAT = {"RUBRICON_WORKER_HEARTBEAT_S": "0.5"}  # stale after 1.5 s


def page(client: Client) -> str:
    response = client.get(reverse("core:workers"))
    assert response.status_code == 200
    return response.content.decode()


def row(html: str, hostname: str) -> str:
    match = re.search(rf'<tr data-worker="{re.escape(hostname)}".*?</tr>', html, re.S)
    assert match, f"{hostname} not on the page:\n{html}"
    return match.group(0)


def row_with(client: Client, hostname: str, text: str) -> str | None:
    html = row(page(client), hostname)
    return html if text in html else None


def until(condition, *, timeout: float = 30, message=lambda: ""):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, message()
        time.sleep(0.2)
    return value


def test_the_workers_page_shows_each_workers_queues_beat_and_running_chunk_then_marks_it_stale(
    start_worker, settings, private_broker
):
    settings.RUBRICON_WORKER_HEARTBEAT_S = 0.5
    project, version, _ = make_rollouts(4)
    member, outsider = UserFactory(), UserFactory()
    MembershipFactory(project=project, user=member)
    as_member, as_outsider = Client(), Client()
    as_member.force_login(member)
    as_outsider.force_login(outsider)

    env = {"CELERY_BROKER_URL": private_broker, **BEAT}
    busy = start_worker("busy", env, concurrency=2)
    hostname = until(lambda: WorkerHeartbeat.objects.filter(hostname__startswith="busy@").values_list(
        "hostname", flat=True).first(), message=busy.log)
    first_beat = WorkerHeartbeat.objects.get(hostname=hostname, queue="judge").seen_at
    html = row(page(as_member), hostname)
    assert all(f"<code>{queue}</code>" in html for queue in ("default", "judge", "rollout", "train"))
    assert "alive" in html and "idle" in html
    # It keeps beating (not only at start).
    until(lambda: WorkerHeartbeat.objects.get(hostname=hostname, queue="judge").seen_at > first_beat)

    def slow(body, index):  # each judge call takes 8 s: the chunk is running while we look
        return Reply(content=judge_responder(body, index), delay_s=8.0)

    with StubChatServer(slow) as server:
        endpoint = EndpointFactory(project=project, base_url=server.base_url, max_concurrency=4)
        job = services.judge_job_create(project=project, rubric_version=version, endpoint=endpoint, enqueue=False)
        from workers.celery import app

        with app.connection(private_broker) as connection:
            app.send_task("workers.judging.start_judge_job", kwargs={"job_id": job.pk}, connection=connection)
        detail = reverse("judging:detail", args=[project.pk, job.pk])
        running = f'<a href="{detail}">judge job #{job.pk}</a> · chunk 0'
        html = until(lambda: row_with(as_member, hostname, running), message=busy.log)
        assert "started" in html
        # Someone outside the project sees that the worker is busy, not with what.
        other = row(page(as_outsider), hostname)
        assert "a judge job of another project" in other
        assert detail not in other and f"#{job.pk}" not in other

        busy.kill()  # kill -9: no clean shutdown, the rows stay and go stale
        html = until(lambda: row_with(as_member, hostname, "stale"), timeout=10)
        assert "alive" not in html and detail not in html  # what it ran then is not known now

    # A worker that stops cleanly leaves the list.
    calm = start_worker("calm", env, concurrency=1)
    calm_host = until(lambda: WorkerHeartbeat.objects.filter(hostname__startswith="calm@").values_list(
        "hostname", flat=True).first(), message=calm.log)
    calm.stop()
    until(lambda: not WorkerHeartbeat.objects.filter(hostname=calm_host).exists(), timeout=20, message=calm.log)
    assert calm_host not in page(as_member)
    assert hostname in page(as_member)  # the killed one is still listed, stale


def test_the_workers_page_needs_a_login(client):
    response = client.get(reverse("core:workers"))
    assert response.status_code == 302 and "login" in response["Location"]
