"""The Celery app. Queues: default (exports, imports, bookkeeping), judge, rollout, train (see ARCHITECTURE.md).

Start a worker with `celery -A workers worker -Q default,judge` (CPU node) or `-Q rollout,train` (GPU node).
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.dev")

QUEUES = ("default", "judge", "rollout", "train")

app = Celery("rubricon", include=["workers.system", "workers.judging", "workers.generation", "workers.training", "workers.exports"])
app.config_from_object("django.conf:settings", namespace="CELERY")
# The default for every thread (Celery's "current app" is per thread): web threads enqueue through celery.current_app.
app.set_default()
app.conf.task_queues = [Queue(name, routing_key=name) for name in QUEUES]
# Each domain module declares its queue here, so producers never have to remember it.
app.conf.task_routes = {
    "workers.system.*": {"queue": "default"},
    "workers.judging.*": {"queue": "judge"},
    "workers.generation.*": {"queue": "rollout"},
    "workers.training.*": {"queue": "train"},
    "workers.exports.*": {"queue": "default"},
}


@app.on_after_configure.connect
def _ensure_broker_folders(sender: Celery, **kwargs) -> None:
    # kombu's filesystem transport needs its folders before the first message is sent or polled.
    if not str(sender.conf.broker_url or "").startswith("filesystem"):
        return
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)

