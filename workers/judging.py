"""Judge jobs on queue `judge`: plan chunks, then score each chunk (see webapp.judging.services)."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(name="workers.judging.start_judge_job", ignore_result=True)
def start_judge_job(*, job_id: int) -> None:
    from webapp.core.errors import ApplicationError
    from webapp.judging import services

    try:
        pending = services.judge_job_plan(job_id=job_id)
    except ApplicationError as error:
        services.judge_job_fail(job_id=job_id, error=error.message)
        return
    except Exception as error:
        # Never leave a job pending forever: the UI shows the reason, the worker log the traceback.
        services.judge_job_fail(job_id=job_id, error=f"could not start: {error!r}")
        raise
    for index in pending:
        judge_chunk.delay(job_id=job_id, index=index)


@shared_task(
    name="workers.judging.judge_chunk", bind=True, ignore_result=True,
    autoretry_for=(OperationalError,), retry_backoff=5, retry_backoff_max=120, max_retries=5,
)
def judge_chunk(self, *, job_id: int, index: int) -> None:
    from webapp.core.errors import ApplicationError
    from webapp.core.jobs import job_chunk_record_error
    from webapp.core.models import JobChunk
    from webapp.judging import services

    try:
        services.judge_chunk_run(job_id=job_id, index=index)
    except ApplicationError as error:
        services.judge_job_fail(job_id=job_id, error=error.message)
    except OperationalError:
        raise  # transient database trouble: Celery retries with backoff
    except Exception as error:
        # Judge and rubric failures are stored per item by the engine; reaching here is a bug or an outage.
        job_chunk_record_error(kind=JobChunk.Kind.JUDGE, job_id=job_id, index=index, error=repr(error))
        services.judge_job_fail(job_id=job_id, error=f"chunk {index} failed: {error!r}")
        raise


@shared_task(name="workers.judging.rubric_preview", ignore_result=True)
def rubric_preview(*, job_id: int) -> None:
    """Judge criteria of a live preview (webapp.rubric_tools.preview); the page polls the job row."""
    from webapp.rubric_tools.jobs import tool_job_run
    from webapp.rubric_tools.preview import rubric_preview_execute

    tool_job_run(rubric_preview_execute, job_id=job_id)


@shared_task(name="workers.judging.rubric_dry_run", ignore_result=True)
def rubric_dry_run(*, job_id: int) -> None:
    """Estimate calls, tokens, time and zero-variance groups of a judge job (webapp.rubric_tools.dryrun)."""
    from webapp.rubric_tools.dryrun import rubric_dry_run_execute
    from webapp.rubric_tools.jobs import tool_job_run

    tool_job_run(rubric_dry_run_execute, job_id=job_id)


@shared_task(name="workers.judging.position_check", ignore_result=True)
def position_check(*, job_id: int) -> None:
    """The judge compares pairs of rollouts in both orders (position-swap consistency, see webapp.reviews); the
    PositionCheckJob row carries its progress, cost and outcome."""
    from webapp.reviews import services

    services.position_check_job_run(job_id=job_id)
