"""Generation jobs on queue `rollout`: plan chunks of examples, then generate each chunk."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(name="workers.generation.start_generation_job", ignore_result=True)
def start_generation_job(*, job_id: int) -> None:
    from webapp.core.errors import ApplicationError
    from webapp.rollouts import services

    try:
        pending = services.generation_job_plan(job_id=job_id)
    except ApplicationError as error:
        services.generation_job_fail(job_id=job_id, error=error.message)
        return
    except Exception as error:
        services.generation_job_fail(job_id=job_id, error=f"could not start: {error!r}")
        raise
    for index in pending:
        generation_chunk.delay(job_id=job_id, index=index)


@shared_task(
    name="workers.generation.generation_chunk", ignore_result=True,
    autoretry_for=(OperationalError,), retry_backoff=5, retry_backoff_max=120, max_retries=5,
)
def generation_chunk(*, job_id: int, index: int) -> None:
    from webapp.core.errors import ApplicationError
    from webapp.core.jobs import job_chunk_record_error
    from webapp.core.models import JobChunk
    from webapp.exports.verifiers_tasks import verifiers_chunk_run
    from webapp.rollouts import services
    from webapp.rollouts.models import GenerationJob
    from webapp.tasks.services import is_verifiers_task

    job = GenerationJob.objects.select_related("task").filter(pk=job_id).first()
    run = verifiers_chunk_run if job is not None and is_verifiers_task(job.task) else services.generation_chunk_run
    try:
        run(job_id=job_id, index=index)
    except ApplicationError as error:
        services.generation_job_fail(job_id=job_id, error=error.message)
    except OperationalError:
        raise
    except Exception as error:
        # Per-item failures (context overflow, endpoint errors) are stored on rollouts; this is an outage or a bug.
        job_chunk_record_error(kind=JobChunk.Kind.GENERATION, job_id=job_id, index=index, error=repr(error))
        services.generation_job_fail(job_id=job_id, error=f"chunk {index} failed: {error!r}")
        raise


@shared_task(name="workers.generation.draft_rubric", ignore_result=True)
def draft_rubric(*, job_id: int) -> None:
    """An LM drafts a rubric for a task (webapp.rubric_tools.drafting); a model call, so it runs where models run."""
    from webapp.rubric_tools.drafting import rubric_draft_execute
    from webapp.rubric_tools.jobs import tool_job_run

    tool_job_run(rubric_draft_execute, job_id=job_id)


@shared_task(name="workers.generation.endpoint_check", ignore_result=True)
def endpoint_check(*, check_id: int) -> None:
    """One "test connection" call (webapp.endpoints.services.endpoint_check_run)."""
    from webapp.endpoints.services import endpoint_check_fail, endpoint_check_run

    try:
        endpoint_check_run(check_id=check_id)
    except Exception as error:
        endpoint_check_fail(check_id=check_id, error=f"The check failed: {error!r}")
        raise
