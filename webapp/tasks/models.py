from __future__ import annotations

from django.conf import settings
from django.db import models


class TaskKind(models.TextChoices):
    SINGLE_TURN = "single_turn", "Single turn"
    ENVIRONMENT = "environment", "Multi-turn environment"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    EVAL = "eval", "Eval"


class Task(models.Model):
    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="tasks")
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="What the model is asked to do, in words.")
    system_prompt = models.TextField(blank=True)
    prompt_template = models.TextField(
        default="{{ prompt }}", help_text="Jinja template for the user turn; variables: prompt, answer, info."
    )
    kind = models.CharField(max_length=16, choices=TaskKind.choices, default=TaskKind.SINGLE_TURN)
    environment = models.CharField(max_length=64, blank=True, help_text="Environment name (wordle, tools).")
    environment_config = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    row_version = models.PositiveIntegerField(default=1, help_text="Optimistic lock: bumped on every edit.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="task_unique_project_name")]
        indexes = [models.Index(fields=["project", "-id"], name="task_project_id")]

    def __str__(self) -> str:
        return self.name


class Example(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="examples")
    external_id = models.CharField(max_length=200, help_text="Stable id from the source data; unique per task.")
    prompt = models.TextField(blank=True)
    messages = models.JSONField(null=True, blank=True, help_text="Chat messages, when the example is a conversation.")
    answer = models.TextField(blank=True, help_text="Reference answer.")
    info = models.JSONField(default=dict, blank=True)
    checklist = models.JSONField(default=list, blank=True, help_text="Per-example rubric items.")
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    created_at = models.DateTimeField(auto_now_add=True)
    row_version = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "external_id"], name="example_unique_task_external_id")]
        indexes = [models.Index(fields=["task", "split", "id"], name="example_task_split_id")]

    def __str__(self) -> str:
        return f"{self.task_id}:{self.external_id}"
