"""gunicorn settings of the web process: docker-compose, the Dockerfile and bench/annotator_load.py start it with
`gunicorn -c webapp/gunicorn.conf.py webapp.wsgi:application`; command-line options override these.

Threads (gthread): dozens of annotators keep connections open between their labels, and a request waits on
Postgres for a good part of its time. Each thread keeps its own database connection (CONN_MAX_AGE), so
workers × threads stays well under Postgres's max_connections (100 by default) together with the Celery workers.
On 2 cores, 4 × 8 serves 50 annotators at p95 40–100 ms, by host (docs/benchmarks.md).
"""

import os

bind = os.environ.get("RUBRICON_WEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
threads = int(os.environ.get("RUBRICON_WEB_THREADS", "8"))
worker_class = "gthread"
timeout = 60
keepalive = 5
accesslog = "-"
# gunicorn 27's control socket defaults to ~/.gunicorn/gunicorn.ctl, shared by every instance a user runs on a host
# (two sites would control each other). Off unless an instance names its own path.
if os.environ.get("RUBRICON_WEB_CONTROL_SOCKET"):
    control_socket = os.environ["RUBRICON_WEB_CONTROL_SOCKET"]
else:
    control_socket_disable = True


def post_worker_init(worker) -> None:
    """Import the URLconf, and with it every view, before the worker takes requests: otherwise each worker's first
    request pays for it (0.8 s on 2 cores), and a fresh server's first users wait that long."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - the lazy import is the point
