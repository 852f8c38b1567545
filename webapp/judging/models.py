from __future__ import annotations

from django.db import models

from webapp.core.models import MeteredJob


class JudgeJob(MeteredJob):
    progress_unit = "rollouts"

    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="judge_jobs")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="judge_jobs")
    endpoint = models.ForeignKey(
        "endpoints.ModelEndpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="judge_jobs",
        help_text="Judge model; empty when the rubric has only programmatic criteria.",
    )
    selection = models.JSONField(default=dict, blank=True, help_text="Rollout filters this job scores.")
    judge_fingerprint = models.CharField(max_length=128, blank=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-id"], name="judgejob_project_id")]

    def __str__(self) -> str:
        return f"judge job #{self.pk}"


# The judge fingerprint stored with scores of programmatic criteria (no LM judge involved).
PROGRAMMATIC = "programmatic"


class CriterionScore(models.Model):
    """One criterion's score for one rollout under one rubric version and one judge (or 'programmatic')."""

    rollout = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="criterion_scores")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    criterion_key = models.CharField(max_length=64)
    judge_fingerprint = models.CharField(max_length=128, help_text="Model + sampling + prompt version, or 'programmatic'.")
    job = models.ForeignKey(JudgeJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="scores")
    raw_choice = models.CharField(max_length=200, blank=True)
    score = models.FloatField(null=True, blank=True, help_text="0..1; empty when the judge failed.")
    rationale = models.TextField(blank=True)
    raw_response = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    cached = models.BooleanField(default=False, help_text="Answered from the judge cache (no call made).")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "rubric_version", "criterion_key", "judge_fingerprint"],
                name="criterion_score_unique",
            )
        ]
        indexes = [models.Index(fields=["rubric_version", "criterion_key", "judge_fingerprint"], name="cscore_rv_key")]


class RolloutScore(models.Model):
    """The weighted total of a rollout's criteria under one rubric version and judge."""

    rollout = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="scores")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    judge_fingerprint = models.CharField(max_length=128)
    job = models.ForeignKey(JudgeJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="totals")
    total = models.FloatField(null=True, blank=True)
    gated_by = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "rubric_version", "judge_fingerprint"], name="rollout_score_unique"
            )
        ]
        indexes = [models.Index(fields=["rubric_version", "total"], name="rscore_rv_total")]


class JudgeCache(models.Model):
    """Content-addressed judge responses: sha256(model + sampling + rendered prompt) → response."""

    key = models.CharField(max_length=64, unique=True)
    response = models.JSONField(help_text="The judge completion as training.judges stores it.")
    created_at = models.DateTimeField(auto_now_add=True)
