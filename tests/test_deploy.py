"""The deployment artefacts: production settings, migrations, docker-compose."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import yaml

from tests.conftest import REPO_ROOT


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def production_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="webapp.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="rubricon.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
    env.update(overrides)
    return env


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = production_env()
    del env["DJANGO_SECRET_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_migrations_match_the_models():
    result = manage("makemigrations", "--check", "--dry-run", env=production_env())
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_process_imports_no_torch():
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE']='webapp.settings.dev'; import django; django.setup();"
        "import webapp.urls, workers.celery;"
        "from django.urls import resolve; resolve('/');"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_docker_compose_names_the_full_stack():
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "gpu-worker", "flower"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "gpu-worker"):
        assert "healthcheck" in services[name], name
    assert "default,judge" in " ".join(services["worker"]["command"])
    assert "rollout,train" in " ".join(services["gpu-worker"]["command"])
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert services["gpu-worker"]["build"]["args"]["EXTRAS"] == "train,vllm"
    assert "gunicorn -c webapp/gunicorn.conf.py" in services["web"]["command"]
    assert services["flower"]["profiles"] == ["flower"]
    assert {"postgres-data", "redis-data", "rubricon-data"} <= set(compose["volumes"])


def test_one_gunicorn_configuration_serves_compose_the_image_and_the_benchmark():
    import runpy

    config = runpy.run_path(str(REPO_ROOT / "webapp" / "gunicorn.conf.py"))
    assert config["worker_class"] == "gthread" and config["workers"] * config["threads"] < 100  # Postgres connections
    assert '"-c", "webapp/gunicorn.conf.py"' in (REPO_ROOT / "Dockerfile").read_text()
    assert '"webapp/gunicorn.conf.py"' in (REPO_ROOT / "bench" / "annotator_load.py").read_text()


def test_production_settings_refuse_an_empty_or_default_secret_key():
    for value in ("", "   ", "insecure-dev-key-change-me", "short"):
        result = manage("check", env=production_env(DJANGO_SECRET_KEY=value))
        assert result.returncode != 0, value
        assert "DJANGO_SECRET_KEY is empty, too short or the development default" in result.stderr, result.stderr


def test_production_api_answers_json_only_never_the_browsable_html():
    code = (
        "import django; django.setup(); from django.test import Client;"
        "r = Client().get('/api/v1/projects/', HTTP_ACCEPT='text/html', SERVER_NAME='rubricon.example.com', secure=True);"
        "print(r.status_code, r['Content-Type'])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=production_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    status, content_type = result.stdout.split()
    assert status in ("401", "403", "406") and content_type == "application/json", result.stdout


def test_gunicorn_makes_no_control_socket_shared_between_instances(tmp_path):
    """gunicorn 27 creates ~/.gunicorn/gunicorn.ctl by default: two instances of one user would share it."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**production_env(HOME=str(tmp_path), RUBRICON_WEB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1",
                            RUBRICON_WEB_THREADS="1")}
    env.pop("XDG_RUNTIME_DIR", None)
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "webapp/gunicorn.conf.py",
                                    "webapp.wsgi:application"], cwd=REPO_ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"Booting worker" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        time.sleep(1)  # the arbiter sets up the control socket right around the first worker's boot
        sockets = [p for p in tmp_path.rglob("*.ctl")]
        assert sockets == [], sockets
    finally:
        process.terminate()
        process.wait(timeout=30)
