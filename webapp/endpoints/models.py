from __future__ import annotations

from django.db import models

from webapp.core.models import Job, JobStatus


class EndpointKind(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible server"
    VLLM = "vllm", "Local vLLM engine"
    TRANSFORMERS = "transformers", "Local transformers"


class ModelEndpoint(models.Model):
    """Where completions come from: a policy to generate rollouts with, or a judge.

    API keys are never stored: `api_key_env` names the environment variable the worker reads them from.
    """

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="endpoints")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=EndpointKind.choices, default=EndpointKind.OPENAI)
    base_url = models.URLField(blank=True, help_text="e.g. http://gpu-node:8000/v1 for `vllm serve`.")
    model = models.CharField(max_length=300, help_text="Model name, local path, or 'bundled'.")
    api_key_env = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable holding the API key."
    )
    default_params = models.JSONField(default=dict, blank=True, help_text="Sampling defaults (temperature, ...).")
    max_concurrency = models.PositiveIntegerField(default=8)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    supports_structured_output = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    row_version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="endpoint_unique_project_name")]
        indexes = [models.Index(fields=["project", "-id"], name="endpoint_project_id")]

    def __str__(self) -> str:
        return self.name


class EndpointCheck(Job):
    """One "test connection" call, run by a worker: loading a local model takes 15–50 s, too long for a request.
    Holds the reply and latency, never a key."""

    endpoint = models.ForeignKey(ModelEndpoint, on_delete=models.CASCADE, related_name="checks")
    reply = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    load_s = models.FloatField(null=True, blank=True)
    notes = models.JSONField(default=list, blank=True)

    @property
    def ok(self) -> bool:
        """The call answered (a failed check says what to fix in `error`)."""
        return self.status == JobStatus.SUCCEEDED

    def __str__(self) -> str:
        return f"check #{self.pk} of {self.endpoint_id}"
