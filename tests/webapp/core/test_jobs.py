"""webapp.core.jobs.job_enqueue: the one way services send work to the Celery layer (by task name)."""

from __future__ import annotations

import socket

import pytest
from celery import current_app

from webapp.core.jobs import job_enqueue
from webapp.core.models import WorkerHeartbeat


@pytest.fixture
def eager():
    app = current_app._get_current_object()
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


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
def test_a_task_is_sent_only_once_the_transaction_commits(eager, django_capture_on_commit_callbacks):
    rows = WorkerHeartbeat.objects.filter(hostname=socket.gethostname(), queue="judge")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job_enqueue("workers.system.heartbeat", queue="judge", send_options={"queue": "judge"})
    assert not rows.exists()
    for callback in callbacks:
        callback()
    assert rows.exists()


@pytest.mark.django_db
def test_without_on_commit_the_task_is_sent_at_once(eager):
    job_enqueue("workers.system.heartbeat", on_commit=False, queue="rollout", send_options={"queue": "rollout"})
    assert WorkerHeartbeat.objects.filter(hostname=socket.gethostname(), queue="rollout").exists()


def test_task_routes_pick_the_queue_by_name():
    app = current_app._get_current_object()
    assert app.amqp.router.route({}, "workers.judging.start_judge_job")["queue"].name == "judge"
    assert app.amqp.router.route({}, "workers.generation.endpoint_check")["queue"].name == "rollout"
    assert app.amqp.router.route({"queue": "default"}, "workers.training.advance_evaluation")["queue"].name == "default"
