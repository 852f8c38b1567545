"""The life of a rubric tool job (preview, draft, dry run: one `RubricToolJob` row each): claimed by one worker
delivery, finished with its result or failed with a message, expired when its worker died, read by the pages that
poll it. The tools themselves are preview.py, drafting.py and dryrun.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone

from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Project
from webapp.rubrics.models import RubricToolJob


def tool_job_claim(*, job_id: int, kind: str) -> RubricToolJob | None:
    """Move a pending job to running; None when another delivery already took it (or it was never pending)."""
    claimed = RubricToolJob.objects.filter(pk=job_id, kind=kind, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING, started_at=timezone.now())
    if not claimed:
        return None
    return RubricToolJob.objects.select_related("endpoint", "task", "rubric_version").get(pk=job_id)


def tool_job_finish(*, job: RubricToolJob, result: dict[str, Any]) -> None:
    RubricToolJob.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=JobStatus.SUCCEEDED, result=result, finished_at=timezone.now())


def tool_job_fail(*, job_id: int, error: str) -> None:
    RubricToolJob.objects.filter(pk=job_id, status__in=[JobStatus.PENDING, JobStatus.RUNNING]).update(
        status=JobStatus.FAILED, error=error[:4000], finished_at=timezone.now())


def tool_job_run(run: Callable[..., None], *, job_id: int) -> None:
    """Worker side of every tool job: a domain error is the job's message; anything else fails it, then re-raises."""
    try:
        run(job_id=job_id)
    except ApplicationError as error:
        tool_job_fail(job_id=job_id, error=error.message)
    except Exception as error:
        tool_job_fail(job_id=job_id, error=f"failed: {error!r}")
        raise


def tool_job_get(project: Project, job_id: int, kind: str) -> RubricToolJob:
    job = get_object_or_404(
        RubricToolJob.objects.select_related("rubric_version__rubric", "task", "endpoint"),
        project=project, kind=kind, pk=job_id,
    )
    return tool_job_expire_if_stale(job)


def tool_job_expire_if_stale(job: RubricToolJob) -> RubricToolJob:
    """A job whose worker was killed stays pending/running; past the timeout it is failed so the page stops polling."""
    timeout = timedelta(seconds=settings.RUBRICON_TOOL_JOB_TIMEOUT_S)
    if job.status in (JobStatus.PENDING, JobStatus.RUNNING) and job.created_at < timezone.now() - timeout:
        tool_job_fail(job_id=job.pk, error=f"No result after {timeout.total_seconds() / 60:g} minutes: the worker "
                                           "running this job stopped or no worker serves its queue. Try again.")
        job.refresh_from_db()
    return job
