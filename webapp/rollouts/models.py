from __future__ import annotations

from django.db import models

from webapp.core.models import MeteredJob


class GenerationJob(MeteredJob):
    progress_unit = "rollouts"

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="generation_jobs")
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="generation_jobs")
    split = models.CharField(max_length=8, blank=True, help_text="Empty = all splits.")
    endpoint = models.ForeignKey(
        "endpoints.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="generation_jobs"
    )
    checkpoint = models.ForeignKey(
        "runs.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="generation_jobs"
    )
    model_name = models.CharField(max_length=300, help_text="The model as it was when the job ran.")
    params = models.JSONField(default=dict, blank=True, help_text="Sampling parameters.")
    samples_per_example = models.PositiveIntegerField(default=1)
    example_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="A seeded random sample of this many examples of the split; empty = all."
    )
    example_seed = models.PositiveIntegerField(default=0, help_text="Seed of the example sample.")

    class Meta:
        indexes = [models.Index(fields=["project", "-id"], name="genjob_project_id")]

    def __str__(self) -> str:
        return f"generation #{self.pk}"


class RolloutSource(models.TextChoices):
    GENERATION = "generation", "Generation job"
    TRAINING = "training", "Training run"
    IMPORT = "import", "Import"


class Rollout(models.Model):
    """One completion or trajectory. `group_key` + `sample_index` place it in its GRPO group."""

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="rollouts")
    task = models.ForeignKey("tasks.Task", on_delete=models.CASCADE, related_name="rollouts")
    example = models.ForeignKey("tasks.Example", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollouts")
    job = models.ForeignKey(GenerationJob, null=True, blank=True, on_delete=models.CASCADE, related_name="rollouts")
    run = models.ForeignKey("runs.TrainingRun", null=True, blank=True, on_delete=models.CASCADE, related_name="rollouts")
    step = models.PositiveIntegerField(null=True, blank=True, help_text="Training step, for source=training.")
    source = models.CharField(max_length=16, choices=RolloutSource.choices, default=RolloutSource.GENERATION)
    model_name = models.CharField(max_length=300, blank=True)
    group_key = models.CharField(max_length=64, help_text="Rollouts of the same prompt in the same job share it.")
    sample_index = models.PositiveIntegerField(default=0)
    prompt_messages = models.JSONField(default=list, blank=True)
    messages = models.JSONField(default=list, blank=True, help_text="Full trajectory incl. tool calls.")
    completion = models.TextField(blank=True, help_text="Final assistant text.")
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="Per-turn metadata and environment facts.")
    import_record = models.ForeignKey(
        "core.ImportRecord", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollouts",
        db_index=False, help_text="The import that brought the rollout in, for source=import (a comparison side).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A chunk that runs twice writes nothing twice.
            models.UniqueConstraint(
                fields=["job", "example", "sample_index"],
                condition=models.Q(job__isnull=False),
                name="rollout_unique_job_example_sample",
            ),
            models.UniqueConstraint(
                fields=["run", "step", "group_key", "sample_index"],
                condition=models.Q(run__isnull=False),
                name="rollout_unique_run_step_group_sample",
            ),
        ]
        # Text search also has a trigram index on UPPER(completion), created by a Postgres-only migration
        # (rollouts.0002_rollout_text_trgm) and kept out of the model state: SQLite has no GIN. An index on its
        # characters and character pairs is an operator's opt-in (webapp.rollouts.search_index), off by default.
        indexes = [
            models.Index(fields=["project", "-id"], name="rollout_project_id"),
            models.Index(fields=["task", "-id"], name="rollout_task_id"),
            models.Index(fields=["job", "-id"], name="rollout_job_id"),
            models.Index(fields=["run", "step"], name="rollout_run_step"),
            # A comparison pairs a rollout with a run's newest rollout of the same example and sample (or an
            # import's): one index lookup each, instead of reading every rollout of the example (webapp.compare).
            models.Index(fields=["run", "example", "sample_index", "id"], condition=models.Q(run__isnull=False),
                         name="rollout_run_example"),
            models.Index(fields=["group_key", "sample_index"], name="rollout_group"),
            # Only imported rollouts carry an import: the index skips the rest. Its example and sample serve the
            # comparison's pairing as above.
            models.Index(fields=["import_record", "example", "sample_index", "id"],
                         condition=models.Q(import_record__isnull=False), name="rollout_import_example"),
        ]

    def __str__(self) -> str:
        return f"rollout #{self.pk}"
