"""Rubricon's Django project. The Celery app lives in `workers/` (the layer above the apps); Django loads it as the
installed app `workers` (see workers/apps.py), and services enqueue by task name through webapp.core.jobs.job_enqueue."""
