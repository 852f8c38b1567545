from __future__ import annotations

from django.conf import settings
from django.db import models


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
