"""How a job ended, in words every job page uses: "succeeded", "succeeded with 3 failed", "failed"."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from webapp.core.jobs import job_outcome

register = template.Library()


@register.simple_tag
def job_status(job) -> str:
    """The job's status badge; a success over failed items says so (and is styled apart)."""
    outcome = job_outcome(job)
    partial = " status-partial" if outcome.startswith("succeeded with") else ""
    return format_html('<span class="status status-{}{}">{}</span>', job.status, partial, outcome)
