"""Job state on every job page: the status badge, and one progress fragment with its polling.

    {% load jobs %}
    <section id="progress" {% job_poll job request.path %}>        ← polls itself while the job runs, then stops
      {% job_progress job cancel_url=... retry_url=... %}           ← done/total, rate, elapsed, ETA, duration, actions
      ... every part of the page that depends on the job's state ...
    </section>

The rule (one for every page): the element that polls is the whole state block, so whatever depends on the job's
state (buttons, a run's checkpoints, counters) re-renders with it. Parts that live elsewhere on the page re-render
out of band (`hx-swap-oob`) when job_state_changed says the state moved since the client last saw it."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.utils.html import format_html

from webapp.core.jobs import job_outcome, job_progress_view, job_state_key
from webapp.core.models import Job, MeteredJob

register = template.Library()


@register.simple_tag
def job_status(job: Any) -> str:
    """The job's status badge; a success over failed items says so (and is styled apart)."""
    outcome = job_outcome(job)
    partial = " status-partial" if outcome.startswith("succeeded with") else ""
    return format_html('<span data-job-status="{}" class="status status-{}{}">{}</span>', job.status, job.status,
                       partial, outcome)


@register.simple_tag
def job_poll(job: Job, url: str, *extra: Any, every: str = "1s") -> str:
    """htmx attributes that re-fetch the state block while the job is not finished; nothing once it is (so a
    finished job's page stops polling). The state the client shows rides along (`state`), so the view can tell
    whether it changed (job_state_changed) and re-render dependent parts elsewhere on the page."""
    if job.is_finished:
        return ""
    return format_html('hx-get="{}" hx-trigger="every {}" hx-swap="outerHTML" hx-vals=\'{}\'', url, every,
                       json.dumps({"state": job_state_key(job, *extra)}))


@register.filter
def duration(seconds: float | None) -> str:
    """4.2 s · 3 min 05 s · 2 h 07 min."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.inclusion_tag("core/_job_progress.html", takes_context=True)
def job_progress(context: template.Context, job: Job, *, cancel_url: str = "", cancel_label: str = "Cancel job",
                 retry_url: str = "", retry_label: str = "Run again") -> dict[str, Any]:
    """The one progress fragment: status, done/total in the job's unit, rate, elapsed, ETA while it runs, the
    duration once finished, cost for jobs that call models, the error, and the actions that fit the state (Cancel
    only while it runs, Run again once it ended)."""
    view = job_progress_view(job)
    metered = isinstance(job, MeteredJob)
    tokens_per_s = None
    if isinstance(job, MeteredJob) and view.elapsed_s and job.completion_tokens:
        tokens_per_s = job.completion_tokens / view.elapsed_s
    return {
        "job": job, "p": view, "metered": metered, "tokens_per_s": tokens_per_s,
        "can_edit": context.get("can_edit", False), "csrf_token": context.get("csrf_token"),
        "cancel_url": cancel_url, "cancel_label": cancel_label, "retry_url": retry_url, "retry_label": retry_label,
    }
