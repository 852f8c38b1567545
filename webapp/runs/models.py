from __future__ import annotations

from django.db import models

from webapp.core.models import Job


class TrainingRun(Job):
    """A GRPO run. The process it runs in is keyed by this id and reports through the database; its progress is
    the last step reported out of max_steps."""

    progress_unit = "steps"

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="training_runs")
    name = models.CharField(max_length=200)
    task = models.ForeignKey("tasks.Task", on_delete=models.PROTECT, related_name="training_runs")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.PROTECT, related_name="training_runs")
    judge_endpoint = models.ForeignKey(
        "endpoints.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    base_model = models.CharField(max_length=300)
    config = models.JSONField(default=dict)
    pid = models.PositiveIntegerField(null=True, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    output_dir = models.CharField(max_length=500, blank=True)
    log_path = models.CharField(max_length=500, blank=True)
    calibration_override = models.BooleanField(
        default=False, help_text="Launched although the judge was not calibrated; recorded for the audit trail."
    )
    calibration_note = models.TextField(blank=True)
    split = models.CharField(max_length=8, blank=True, help_text="Example split the run trains on; empty = all.")
    monitor_token = models.CharField(
        max_length=32, blank=True, help_text="Only the monitor chain holding this token may ingest and re-enqueue."
    )
    ingest_offsets = models.JSONField(
        default=dict, blank=True, help_text="Bytes of each sink file already stored, so ingest never repeats a line."
    )
    resumed_from = models.ForeignKey(
        "runs.Checkpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="resumed_runs",
        help_text="The checkpoint of an earlier run this run continues from (its step count goes on from there).",
    )
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-id"], name="run_project_id")]

    def __str__(self) -> str:
        return self.name


class TrainingMetric(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    metrics = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="training_metric_unique_step")]
        ordering = ["run_id", "step"]


class Checkpoint(models.Model):
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="checkpoints")
    step = models.PositiveIntegerField()
    path = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "step"], name="checkpoint_unique_step")]
        ordering = ["run_id", "step"]

    def __str__(self) -> str:
        return f"{self.run} @ step {self.step}"


class CheckpointEvaluation(Job):
    """A checkpoint against the run's base model on held-out examples, scored with the run's rubric version.

    Two generation jobs (base, checkpoint) with the same sampling parameters and seed, then one judge job each; the
    base side is shared by later evaluations of the same run with the same settings, so it is generated once.
    Its progress counts those four stages.
    """

    progress_unit = "stages"

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="evaluations")
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="evaluations")
    split = models.CharField(max_length=8, default="eval", help_text="Example split evaluated on; empty = all.")
    samples_per_example = models.PositiveIntegerField(default=1)
    params = models.JSONField(default=dict, blank=True, help_text="Sampling parameters of both generation jobs.")
    base_job = models.ForeignKey("rollouts.GenerationJob", on_delete=models.PROTECT, related_name="+")
    checkpoint_job = models.ForeignKey("rollouts.GenerationJob", on_delete=models.PROTECT, related_name="+")
    base_judge_job = models.ForeignKey(
        "judging.JudgeJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    checkpoint_judge_job = models.ForeignKey(
        "judging.JudgeJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["run_id", "-id"]

    def __str__(self) -> str:
        return f"evaluation #{self.pk} of {self.checkpoint}"
