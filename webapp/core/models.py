from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    ANNOTATOR = "annotator", "Annotator"
    VIEWER = "viewer", "Viewer"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_project_user")]
        indexes = [models.Index(fields=["user", "project"], name="membership_user_project")]

    def __str__(self) -> str:
        return f"{self.user} · {self.project} · {self.role}"


class WorkerHeartbeat(models.Model):
    """Last sign of life of a Celery worker (its node name, e.g. cpu@host) per queue it consumes: written every
    RUBRICON_WORKER_HEARTBEAT_S by a thread in the worker, with what it runs now, and by the `heartbeat` task."""

    hostname = models.CharField(max_length=255)
    queue = models.CharField(max_length=200)
    seen_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True, help_text="When this worker process started.")
    checked_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time a `heartbeat` task sent to this queue was run by this worker.")
    running = models.JSONField(default=list, blank=True, help_text="Tasks running at the last beat: "
                               "[{task, kind, id, chunk, since}] (kind and id name the job where the task has one).")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hostname", "queue"], name="heartbeat_unique_host_queue")]

    def __str__(self) -> str:
        return f"{self.hostname}/{self.queue}"


class JobStatus(models.TextChoices):
    """Lifecycle shared by every long-running job row (generation, judging, training, export)."""

    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"

    @classmethod
    def finished(cls) -> frozenset[str]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.CANCELLED})


class Job(models.Model):
    """The lifecycle every background job kind shares: status, progress in the kind's unit, timing, error, cancel.

    Rows move only through webapp.core.jobs (job_start, job_progress, job_finish, job_fail, job_cancel), which
    applies the status machine there; no kind writes these columns itself."""

    progress_unit = "items"  # what done/total count, in the product's words (rollouts, rows, steps)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    total = models.PositiveBigIntegerField(default=0, help_text="Items to process, in the kind's unit; 0 = not known.")
    done = models.PositiveBigIntegerField(default=0, help_text="Items processed so far, failed ones included.")
    failed_count = models.PositiveBigIntegerField(default=0, help_text="Of `done`, items that failed (each keeps "
                                                  "its reason).")
    error = models.TextField(blank=True, help_text="Why the job failed, in words the user can act on.")
    cancel_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="When someone asked the job to stop; a running job stops at its next check.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in JobStatus.finished()


class MeteredJob(Job):
    """A job that calls models: what it actually spent. Calls and tokens are booked as each call ends (a chunk
    whose worker died has still spent them); answers from a cache are counted apart and cost nothing.
    `cost_usd` stays 0 until endpoints carry prices (ModelEndpoint has no price fields yet)."""

    calls_made = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)

    class Meta:
        abstract = True


class JobChunk(models.Model):
    """One unit of a long job (judge or generation), small enough to finish in minutes.

    Chunks make jobs resumable: a chunk is marked done in the same transaction that writes its results, so a
    chunk that runs twice (redelivery after a killed worker, or a resume) writes nothing twice."""

    class Kind(models.TextChoices):
        JUDGE = "judge", "Judge job"
        GENERATION = "generation", "Generation job"
        # Not a unit of work but the lease of a job that a task advances by re-enqueuing itself (a chain, e.g. a
        # checkpoint evaluation): index 0, no items; see webapp.core.jobs.job_chain_step.
        EVALUATION = "evaluation", "Checkpoint evaluation (its chain)"

    # The job model each kind's chunks belong to, by label (core imports no app): progress a chunk counted on its
    # job is taken back there when another worker claims the chunk.
    JOB_MODELS = {Kind.JUDGE: "judging.JudgeJob", Kind.GENERATION: "rollouts.GenerationJob",
                  Kind.EVALUATION: "runs.CheckpointEvaluation"}

    kind = models.CharField(max_length=16, choices=Kind.choices)
    job_id = models.PositiveBigIntegerField()
    index = models.PositiveIntegerField()
    item_ids = models.JSONField(help_text="Ids of the rows this chunk processes (rollouts or examples).")
    done = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    progress = models.PositiveIntegerField(
        default=0, help_text="Items of this chunk already counted on the job's `done` while it runs (the holder's "
        "batched progress); taken back when another worker claims the chunk, replaced when it commits.")
    progress_failed = models.PositiveIntegerField(default=0, help_text="Of `progress`, items that failed.")
    leased_by = models.CharField(max_length=200, blank=True, help_text="Who runs the chunk now (host:pid:claim).")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The holder renews the lease while it runs; once it lapses, the holder is gone "
        "and the chunk may be run again.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "job_id", "index"], name="job_chunk_unique")]
        indexes = [models.Index(fields=["kind", "job_id", "done"], name="job_chunk_pending")]


class ImportRecord(models.Model):
    """One import that committed rows: its file's SHA-256 (and the client's Idempotency-Key), so a retried upload
    after a dropped connection is recognised instead of importing the rows a second time."""

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="import_records")
    kind = models.CharField(max_length=32, help_text="examples, or the export kind the file holds.")
    scope = models.CharField(max_length=200, help_text="What the rows went into: kind, task and rubric version.")
    sha256 = models.CharField(max_length=64)
    idempotency_key = models.CharField(max_length=200, blank=True)
    is_copy = models.BooleanField(default=False, help_text="Imported again on purpose ('import a copy').")
    filename = models.CharField(max_length=300, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Two uploads of the same file at once: the second waits on this index and then finds the first.
            models.UniqueConstraint(fields=["project", "scope", "sha256"], condition=models.Q(is_copy=False),
                                    name="import_record_unique_file"),
            models.UniqueConstraint(fields=["project", "idempotency_key"], condition=~models.Q(idempotency_key=""),
                                    name="import_record_unique_key"),
        ]

    def __str__(self) -> str:
        return f"import #{self.pk} ({self.kind}, {self.filename or 'upload'})"
