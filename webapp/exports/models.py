from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.core.models import JobStatus


class ExportKind(models.TextChoices):
    ROLLOUTS = "rollouts", "Rollouts with scores and labels"
    SFT = "sft", "SFT (best-of-n)"
    PREFERENCES = "preferences", "Preference pairs"
    REWARD_MODEL = "reward_model", "Reward-model data, pointwise (one scored rollout per row)"
    REWARD_PAIRS = "reward_pairs", "Reward-model pairs (chosen / rejected)"
    CALIBRATION = "calibration", "Judge calibration set"
    VERIFIERS = "verifiers", "verifiers 0.4 run (traces.jsonl)"
    VERIFIERS_03 = "verifiers_03", "verifiers ≤ 0.3 results (results.jsonl)"


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", "JSONL"
    CSV = "csv", "CSV"
    PARQUET = "parquet", "Parquet"
    HF = "hf", "Hugging Face datasets (zip)"


class Export(models.Model):
    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=16, choices=ExportKind.choices)
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    file = models.FileField(upload_to="exports/", blank=True)
    row_count = models.PositiveBigIntegerField(default=0, help_text="Rows written so far (progress while running).")
    total = models.PositiveBigIntegerField(default=0, help_text="Source rows to scan; 0 until counted.")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-id"], name="export_project_id")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.format}) #{self.pk}"


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
