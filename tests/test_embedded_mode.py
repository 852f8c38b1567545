"""`make run`'s embedded mode for real: SQLite and the filesystem broker under a fresh var dir, the web
server and a worker started together by scripts/run-embedded.sh, no Postgres or Redis involved."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.conf import settings

from tests.conftest import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_embedded_mode_serves_login_and_runs_tasks_on_the_filesystem_broker(tmp_path, bundled_model_dir):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(RUBRICON_VAR_DIR=str(tmp_path), RUBRICON_MODELS_DIR=str(settings.MODELS_DIR), PORT=str(port))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["scripts/run-embedded.sh"], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
                    assert response.status == 200 and b"Log in to Rubricon" in response.read()
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        assert "demo / demo" in log.read_text()
        # Single-user, not debug: a 404 is the app's page (no URL pattern list), static files are still served.
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/no-such-page/", timeout=10)
        except urllib.error.HTTPError as missing:
            body = missing.read().decode()
            assert missing.code == 404 and "URLconf" not in body and "api/v1/" not in body, body[:500]
        else:
            raise AssertionError("a missing page answered 200")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/app.css", timeout=10) as css:
            assert css.status == 200 and css.read()

        # A task sent by another process over the filesystem broker reaches the embedded worker.
        send = (
            "import os; os.environ['DJANGO_SETTINGS_MODULE']='webapp.settings.dev'; import django; django.setup();"
            "from webapp.core.jobs import job_enqueue; job_enqueue('workers.system.heartbeat', on_commit=False, queue='judge', send_options={'queue': 'judge'})"
        )
        subprocess.run([sys.executable, "-c", send], cwd=REPO_ROOT, env=env, check=True, timeout=60)
        database = tmp_path / "rubricon.sqlite3"
        deadline = time.monotonic() + 60
        while True:
            with sqlite3.connect(database) as db:
                rows = db.execute(
                    "select queue from core_workerheartbeat where hostname = ? and checked_at is not null",
                    (f"embedded@{socket.gethostname()}",),
                ).fetchall()
            if rows == [("judge",)]:
                break
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine can make the worker's warm shutdown slow
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
