from __future__ import annotations

from django.db import models

from webapp.core.models import Job


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


class Export(Job):
    progress_unit = "rows"

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=16, choices=ExportKind.choices)
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to="exports/", blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-id"], name="export_project_id")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.format}) #{self.pk}"
