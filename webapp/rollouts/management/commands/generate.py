from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus
from webapp.endpoints.models import ModelEndpoint
from webapp.rollouts import services
from webapp.rollouts.models import GenerationJob
from webapp.tasks.models import Task


class Command(BaseCommand):
    help = "Generate rollouts for a task with a model endpoint — the same generation job the UI launches."

    def add_arguments(self, parser):
        parser.add_argument("--task", type=int, help="Task id.")
        parser.add_argument("--endpoint", type=int, help="ModelEndpoint id.")
        parser.add_argument("--split", choices=["train", "eval"], default="")
        parser.add_argument("-n", "--samples", type=int, default=1, help="Samples per example (group size).")
        parser.add_argument("--temperature", type=float, default=1.0)
        parser.add_argument("--max-tokens", type=int, default=256)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--inline", action="store_true", help="Run here instead of on the Celery workers.")
        parser.add_argument("--resume", type=int, metavar="JOB_ID", help="Resume an interrupted job.")
        parser.add_argument("--cancel", type=int, metavar="JOB_ID", help="Cancel a job.")

    def handle(self, *args, **opts):
        try:
            if opts["cancel"]:
                job = GenerationJob.objects.get(pk=opts["cancel"])
                self.stdout.write("cancelled" if services.generation_job_cancel(job=job) else f"job is {job.status}")
                return
            if opts["resume"]:
                job = GenerationJob.objects.get(pk=opts["resume"])
                if opts["inline"]:
                    return self._run_inline(job.pk)
                self.stdout.write(f"re-enqueued {services.generation_job_resume(job=job)} chunk(s)")
                return
            if not (opts["task"] and opts["endpoint"]):
                raise CommandError("--task and --endpoint are required")
            task = Task.objects.select_related("project").get(pk=opts["task"])
            endpoint = ModelEndpoint.objects.get(pk=opts["endpoint"])
            params = {"temperature": opts["temperature"], "max_tokens": opts["max_tokens"]}
            if opts["seed"] is not None:
                params["seed"] = opts["seed"]
            job = services.generation_job_create(
                project=task.project, task=task, endpoint=endpoint, split=opts["split"], params=params,
                samples_per_example=opts["samples"], enqueue=not opts["inline"],
            )
        except (Task.DoesNotExist, ModelEndpoint.DoesNotExist, GenerationJob.DoesNotExist) as error:
            raise CommandError(str(error)) from error
        except ApplicationError as error:
            raise CommandError(error.message) from error
        self.stdout.write(f"generation job #{job.pk} created")
        if opts["inline"]:
            self._run_inline(job.pk)

    def _run_inline(self, job_id: int) -> None:
        started = time.monotonic()
        try:
            for index in services.generation_job_plan(job_id=job_id):
                services.generation_chunk_run(job_id=job_id, index=index)
                job = GenerationJob.objects.get(pk=job_id)
                self.stdout.write(f"  {job.done}/{job.total} rollouts, {job.failed_count} failed")
        except ApplicationError as error:
            services.generation_job_fail(job_id=job_id, error=error.message)
            raise CommandError(error.message) from error
        job = GenerationJob.objects.get(pk=job_id)
        self.stdout.write(f"job #{job.pk} {job.status} in {time.monotonic() - started:.1f}s: "
                          f"{job.done}/{job.total} rollouts, {job.failed_count} failed")
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(job.error or f"job ended {job.status}")
