from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus
from webapp.endpoints.models import ModelEndpoint
from webapp.judging import services
from webapp.judging.models import JudgeJob
from webapp.rubrics.models import RubricVersion


class Command(BaseCommand):
    help = "Score rollouts with a rubric version — the same judge job the UI launches."

    def add_arguments(self, parser):
        parser.add_argument("--rubric-version", type=int, help="RubricVersion id to score with.")
        parser.add_argument("--endpoint", type=int, help="Judge ModelEndpoint id (needed for LM-judge criteria).")
        parser.add_argument("--task", type=int, help="Only rollouts of this task.")
        parser.add_argument("--job", type=int, help="Only rollouts of this generation job.")
        parser.add_argument("--run", type=int, help="Only rollouts of this training run.")
        parser.add_argument("--source", choices=["generation", "training", "import"])
        parser.add_argument("--inline", action="store_true", help="Run here instead of on the Celery workers.")
        parser.add_argument("--resume", type=int, metavar="JOB_ID", help="Resume an interrupted job.")
        parser.add_argument("--cancel", type=int, metavar="JOB_ID", help="Cancel a job.")

    def handle(self, *args, **opts):
        try:
            if opts["cancel"]:
                job = JudgeJob.objects.get(pk=opts["cancel"])
                self.stdout.write("cancelled" if services.judge_job_cancel(job=job) else f"job is {job.status}")
                return
            if opts["resume"]:
                job = JudgeJob.objects.get(pk=opts["resume"])
                if opts["inline"]:
                    return self._run_inline(job.pk)
                self.stdout.write(f"re-enqueued {services.judge_job_resume(job=job)} chunk(s)")
                return
            if not opts["rubric_version"]:
                raise CommandError("--rubric-version is required")
            version = RubricVersion.objects.select_related("rubric__project").get(pk=opts["rubric_version"])
            endpoint = ModelEndpoint.objects.get(pk=opts["endpoint"]) if opts["endpoint"] else None
            selection = {k: opts[k] for k in ("task", "job", "run", "source") if opts[k]}
            job = services.judge_job_create(
                project=version.rubric.project, rubric_version=version, endpoint=endpoint, selection=selection,
                enqueue=not opts["inline"],
            )
        except (RubricVersion.DoesNotExist, ModelEndpoint.DoesNotExist, JudgeJob.DoesNotExist) as error:
            raise CommandError(str(error)) from error
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(f"judge job #{job.pk} created")
        if opts["inline"]:
            self._run_inline(job.pk)

    def _run_inline(self, job_id: int) -> None:
        started = time.monotonic()
        for index in services.judge_job_plan(job_id=job_id):
            services.judge_chunk_run(job_id=job_id, index=index)
            job = JudgeJob.objects.get(pk=job_id)
            self.stdout.write(f"  {job.done}/{job.total} scored, {job.failed_count} failed")
        job = JudgeJob.objects.get(pk=job_id)
        self.stdout.write(
            f"job #{job.pk} {job.status} in {time.monotonic() - started:.1f}s: {job.done}/{job.total} scored, "
            f"{job.failed_count} failed, {job.calls_made} judge calls, {job.cache_hits} cache hits"
        )
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(job.error or f"job ended {job.status}")
