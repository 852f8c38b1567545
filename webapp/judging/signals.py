"""What judging announces to the apps above it (reviews), which subscribe in their AppConfig.ready."""

from django.dispatch import Signal

# Sent when a judge job has finished writing its scores; kwargs: judge_job_id.
judge_job_scored = Signal()
