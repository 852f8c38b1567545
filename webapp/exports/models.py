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


class HubPush(Job):
    """One push of an export to the Hugging Face Hub as a dataset repo (background job on the `default` queue).

    The token is never stored: `token_env` names an environment variable of the worker, which must pass the
    operator's key-variable rules (training.outbound, RUBRICON_ENDPOINT_KEY_VARS)."""

    export = models.ForeignKey(Export, on_delete=models.CASCADE, related_name="hub_pushes")
    repo_id = models.CharField(max_length=200, help_text="namespace/name of the dataset repo on the Hub.")
    private = models.BooleanField(default=True)
    token_env = models.CharField(max_length=128, help_text="Environment variable of the worker holding the token.")
    url = models.URLField(max_length=500, blank=True, help_text="The commit on the Hub once pushed.")
    commit_oid = models.CharField(max_length=64, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="Paths uploaded into the repo.")

    class Meta:
        indexes = [models.Index(fields=["export", "-id"], name="hubpush_export_id")]

    def __str__(self) -> str:
        return f"push of export #{self.export_id} to {self.repo_id}"
