"""In Chromium: progress moves while a single chunk runs (issue 17), and the job page never contradicts itself
(issue 19 item 5): the final duration shows, Cancel goes and Run again comes with the state, without a reload."""

from __future__ import annotations

import time

import pytest

from tests.browser.test_review import console_errors
from tests.factories import EndpointFactory
from tests.support.judge_server import Reply, StubChatServer
from webapp.core.models import JobChunk
from webapp.demo.seed import DEMO_PASSWORD, DEMO_TASK_NAME, DEMO_USERNAME, seed_demo
from webapp.rollouts.models import GenerationJob

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_progress_moves_inside_one_chunk_and_the_final_duration_shows(page, live_server, login, celery_worker_process):
    project = seed_demo()
    errors = console_errors(page)
    # One request at a time, 0.3 s each: 30 rollouts take ~9 s, all in one chunk (256 rollouts per chunk).
    with StubChatServer(lambda body, i: Reply(content="<answer>7</answer>", delay_s=0.3)) as server:
        EndpointFactory(project=project, name="Slow policy", base_url=server.base_url, max_concurrency=1)
        login(DEMO_USERNAME, DEMO_PASSWORD)
        page.goto(f"{live_server.url}/p/{project.pk}/rollouts/jobs/")
        page.select_option("#id_task", label=DEMO_TASK_NAME)
        page.select_option("#id_split", "eval")
        page.select_option("#id_endpoint", label="Slow policy")
        page.fill("#id_samples_per_example", "3")
        page.fill("#id_max_tokens", "8")
        page.click("text=Start generation job")
        page.locator("#progress .job-progress").wait_for()
        assert page.get_by_role("button", name="Cancel job").count() == 1

        seen: list[tuple[str, int, bool]] = []  # (status, done shown, chunk committed)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            status = page.locator("#progress .job-progress").get_attribute("data-job-status")
            count = page.locator("#progress .progress-count")
            done = int(count.inner_text().split("/")[0]) if count.count() else 0
            job = GenerationJob.objects.first()
            committed = job is not None and JobChunk.objects.filter(job_id=job.pk, kind="generation", done=True).exists()
            seen.append((status, done, committed))
            if status == "succeeded":
                break
            time.sleep(0.25)

    job = GenerationJob.objects.get()
    assert JobChunk.objects.filter(kind="generation", job_id=job.pk).count() == 1  # a single chunk
    moving = sorted({done for status, done, committed in seen if status == "running" and not committed and 0 < done < 30})
    assert len(moving) >= 2, seen  # watched it move at least twice before the chunk committed
    assert seen[-1][:2] == ("succeeded", 30), seen
    assert page.locator(".progress-count").inner_text() == "30 / 30"
    assert "Took" in page.locator("#progress .job-duration").inner_text()
    assert page.get_by_role("button", name="Cancel job").count() == 0  # the actions swapped with the state
    assert page.get_by_role("button", name="Run again").count() == 1
    assert page.locator("#progress[hx-get]").count() == 0  # finished: the page stopped polling
    assert job.calls_made == 30 and job.completion_tokens > 0
    assert not errors, errors
