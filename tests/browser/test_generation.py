"""In Chromium: launch a generation job from the form, watch the progress bar reach 100 % through a real
worker, open a group, and see that HTML inside a completion stays inert text."""

from __future__ import annotations

import pytest

from tests.factories import EndpointFactory
from tests.support.judge_server import StubChatServer
from webapp.demo.seed import DEMO_PASSWORD, DEMO_TASK_NAME, DEMO_USERNAME, seed_demo
from webapp.rollouts.models import GenerationJob

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EVIL = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


def test_launch_a_job_watch_it_finish_and_open_a_group(page, live_server, login, celery_worker_process):
    project = seed_demo()
    with StubChatServer(lambda body, i: f"<answer>7</answer> {EVIL}", latency_s=0.05) as server:
        EndpointFactory(project=project, name="Stub policy", base_url=server.base_url)
        login(DEMO_USERNAME, DEMO_PASSWORD)
        page.goto(f"{live_server.url}/p/{project.pk}/rollouts/jobs/")
        page.select_option("#id_task", label=DEMO_TASK_NAME)
        page.select_option("#id_split", "eval")
        page.select_option("#id_endpoint", label="Stub policy")
        page.fill("#id_samples_per_example", "3")
        page.fill("#id_max_tokens", "16")
        page.click("text=Start generation job")
        page.wait_for_selector("#progress .status-succeeded", timeout=60_000)
        assert page.locator(".progress-count").inner_text() == "30 / 30"

    job = GenerationJob.objects.get()
    page.click("text=Browse this job's rollouts")
    page.locator("table.rollouts tbody tr").first.wait_for()
    page.locator("table.rollouts tbody tr td:nth-child(4) a").first.click()
    assert "3 samples" in page.locator("h1").inner_text()
    assert page.locator("article.sample").count() == 3
    assert EVIL in page.locator("article.sample pre.text").first.inner_text()  # shown as text
    assert page.evaluate("window.pwned") is None  # and never run
    assert job.rollouts.count() == 30
