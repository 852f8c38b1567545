"""The life of a rubric tool job (preview, draft, dry run: one `RubricToolJob` row each): claimed by one worker
delivery, finished with its result or failed with a message, expired when its worker died, read by the pages that
poll it. The tools themselves are preview.py, drafting.py and dryrun.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404

from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_expire_if_stale, job_fail, job_finish, job_start
from webapp.core.models import JobStatus, Project
from webapp.rubrics.models import RubricToolJob


def tool_job_claim(*, job_id: int, kind: str) -> RubricToolJob | None:
    """Move a pending job to running; None when another delivery already took it (or it was never pending)."""
    if not RubricToolJob.objects.filter(pk=job_id, kind=kind).exists() or not job_start(
            model=RubricToolJob, job_id=job_id):
        return None
    return RubricToolJob.objects.select_related("endpoint", "task", "rubric_version").get(pk=job_id)


def tool_job_finish(*, job: RubricToolJob, result: dict[str, Any]) -> None:
    job_finish(model=RubricToolJob, job_id=job.pk, status=JobStatus.SUCCEEDED, result=result)


def tool_job_fail(*, job_id: int, error: str) -> None:
    job_fail(model=RubricToolJob, job_id=job_id, error=error[:4000])


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
    timeout_s = settings.RUBRICON_TOOL_JOB_TIMEOUT_S
    job_expire_if_stale(job, timeout_s=timeout_s, error=f"No result after {timeout_s / 60:g} minutes: the worker "
                                                       "running this job stopped or no worker serves its queue. Try again.")
    return job
