from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.core.models import Job


class Rubric(models.Model):
    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="rubrics")
    task = models.ForeignKey(
        "tasks.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="rubrics",
        help_text="The task this rubric is written for (used for previews and defaults).",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="rubric_unique_project_name")]
        indexes = [models.Index(fields=["project", "-id"], name="rubric_project_id")]

    def __str__(self) -> str:
        return self.name


class RubricVersion(models.Model):
    """An immutable snapshot of a rubric. Scores and labels point here, so editing never rewrites history."""

    rubric = models.ForeignKey(Rubric, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    spec = models.JSONField(help_text="Rubric spec validated by training.rubrics.")
    note = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rubric", "number"], name="rubric_version_unique_number")]
        ordering = ["rubric_id", "-number"]

    def __str__(self) -> str:
        return f"{self.rubric} v{self.number}"

    @property
    def criteria(self) -> list[dict]:
        return list(self.spec.get("criteria", []))


class RubricToolJob(Job):
    """A short job behind a rubric tool: a live preview, an AI draft or a dry run. Input and result live on the row
    (the page polls it); nothing here writes scores, so trying a rubric never touches real judge results."""

    class Kind(models.TextChoices):
        PREVIEW = "preview", "Live preview"
        DRAFT = "draft", "AI draft"
        DRY_RUN = "dry_run", "Dry run"

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="rubric_tool_jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    rubric_version = models.ForeignKey(
        RubricVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="tool_jobs",
        help_text="The saved version tried; empty for an unsaved spec or a draft.",
    )
    task = models.ForeignKey("tasks.Task", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(
        "endpoints.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    spec = models.JSONField(default=dict, blank=True, help_text="The spec tried (preview, dry run).")
    params = models.JSONField(default=dict, blank=True, help_text="Input: items to score, options.")
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "kind", "-id"], name="rubric_tool_job_project")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"
