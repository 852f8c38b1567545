from __future__ import annotations

from django.apps import AppConfig


class WorkersConfig(AppConfig):
    """Loads the Celery app in every Django process (web, manage.py, tests), so that
    webapp.core.jobs.job_enqueue sends through the configured broker without webapp importing `workers`."""

    name = "workers"
    label = "workers"

    def ready(self) -> None:
        import workers.celery  # noqa: F401  (configures the app and makes it Celery's default for every thread)
