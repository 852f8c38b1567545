from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models

from webapp.core.models import MeteredJob


class SamplingStrategy(models.TextChoices):
    RANDOM = "random", "Random"
    STRATIFIED = "stratified", "Stratified by judge score"
    DISAGREEMENT = "disagreement", "Disagreement first"
    ZERO_VARIANCE = "zero_variance", "Zero-variance GRPO groups"
    EXTREMES = "extremes", "Top and bottom rewards"
    FOLLOW_RUN = "follow_run", "Follow a training run (by step and reward)"


class ReviewMode(models.TextChoices):
    CRITERIA = "criteria", "Criteria"
    PAIRWISE = "pairwise", "Pairwise"
    RANKING = "ranking", "Ranking (a group of responses, best to worst)"


class ReviewQueue(models.Model):
    project = models.ForeignKey("core.Project", on_delete=models.CASCADE, related_name="review_queues")
    name = models.CharField(max_length=200)
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="review_queues")
    selection = models.JSONField(default=dict, blank=True, help_text="Rollout filters the queue samples from.")
    strategy = models.CharField(max_length=16, choices=SamplingStrategy.choices, default=SamplingStrategy.RANDOM)
    mode = models.CharField(max_length=16, choices=ReviewMode.choices, default=ReviewMode.CRITERIA)
    reviewers_per_item = models.PositiveSmallIntegerField(default=1)
    blind = models.BooleanField(default=True, help_text="Hide judge scores until the label is submitted.")
    reservation_minutes = models.PositiveIntegerField(default=30)
    seed = models.PositiveIntegerField(default=0, help_text="Seed of the sampling, so a queue can be rebuilt exactly.")
    assignees = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="assigned_queues")
    # A queue that follows a training run: new training rollouts keep being sampled into it as the run goes.
    follow_run = models.ForeignKey(
        "runs.TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="review_queues",
        help_text="Training run whose new rollouts are sampled into the queue as it goes.",
    )
    follow_cap = models.PositiveIntegerField(null=True, blank=True, help_text="Most items a following queue takes.")
    follow_per_step = models.PositiveIntegerField(default=0, help_text="Rollouts sampled from each step.")
    followed_step = models.PositiveIntegerField(default=0, help_text="Last training step sampled into the queue.")
    guidelines = models.TextField(blank=True, help_text="Labeling guidelines (markdown), shown on the labeling page.")
    guidelines_rubric_version = models.ForeignKey(
        "rubrics.RubricVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The rubric version the guidelines were written for (they follow the queue's version).",
    )
    guidelines_updated_at = models.DateTimeField(null=True, blank=True)
    guidelines_updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                              on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["project", "-id"], name="queue_project_id")]

    def __str__(self) -> str:
        return self.name


class ReviewItem(models.Model):
    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    rollout = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="review_items")
    rollout_b = models.ForeignKey(
        "rollouts.Rollout", null=True, blank=True, on_delete=models.CASCADE, related_name="+",
        help_text="Second rollout, in pairwise mode.",
    )
    completed_count = models.PositiveSmallIntegerField(default=0)
    shown_a_first = models.BooleanField(default=True, help_text="Pairwise: show `rollout` on the left (randomized).")
    priority = models.FloatField(null=True, blank=True, help_text="Why the sampler picked it (e.g. judge score).")
    group_rollout_ids = models.JSONField(
        default=list, blank=True, help_text="Ranking mode: the group's rollouts to rank, frozen with the queue.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["queue", "position"], name="review_item_unique_position")]
        indexes = [
            models.Index(fields=["queue", "completed_count", "position"], name="review_item_next"),
            # Blind review asks which items show a rollout; a ranking item shows its whole group (webapp/reviews/blind).
            GinIndex(fields=["group_rollout_ids"], opclasses=["jsonb_path_ops"], name="review_item_group"),
        ]


class HumanLabel(models.Model):
    """A human's answer to one criterion for one rollout. `row_version` refuses stale edits."""

    rollout = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="labels")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    criterion_key = models.CharField(max_length=64)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="labels")
    queue = models.ForeignKey(ReviewQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="labels")
    choice = models.CharField(max_length=200, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="0..1, on the same scale as the judge.")
    comment = models.TextField(blank=True)
    reward_hacking = models.BooleanField(default=False)
    row_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "rubric_version", "criterion_key", "annotator"], name="human_label_unique"
            )
        ]
        indexes = [models.Index(fields=["rubric_version", "criterion_key"], name="label_rv_key")]


class LabelSource(models.TextChoices):
    """The tables whose writes `LabelWrites` counts (the kind of label, in the counters' `source`)."""

    LABEL = "label", "Criterion labels (HumanLabel)"
    PAIRWISE = "pairwise", "Pairwise labels (PairwiseLabel)"
    JUDGMENT = "judgment", "Judge position-swap verdicts (PairwiseJudgment)"


class LabelWrites(models.Model):
    """How many rows of one kind of label were written for a rubric version: every insert, update and delete adds
    to it, whichever way it was made (the ORM, bulk writes, cascades, raw SQL), because the database counts them
    (triggers: migration 0008 on Postgres, `label_writes.sqlite_triggers_install` on SQLite).

    The agreement dashboard keys its cache on these counters (`dashboard.data_signature`): a few index probes instead
    of counting the version's labels on every view. A counter only grows, so a key never comes back. No foreign key
    to the version: a deleted version's labels are deleted too, and those deletes must still count. Version 0 counts
    TRUNCATEs of the table, and every signature reads it. Never reset the counters while cached figures may exist.
    """

    rubric_version_id = models.BigIntegerField(help_text="The labels' rubric version; 0 = the whole table (TRUNCATE).")
    source = models.CharField(max_length=16, choices=LabelSource.choices)
    writes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rubric_version_id", "source"], name="label_writes_unique"),
        ]


class Preference(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"


class PairwiseLabel(models.Model):
    rollout_a = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="+")
    rollout_b = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="+")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    criterion_key = models.CharField(max_length=64, blank=True, help_text="Empty = overall preference.")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pairwise_labels")
    queue = models.ForeignKey(ReviewQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="pairwise_labels")
    preferred = models.CharField(max_length=8, choices=Preference.choices)
    shown_a_first = models.BooleanField(help_text="Display order, randomized per item and recorded.")
    comment = models.TextField(blank=True)
    row_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rollout_a", "rollout_b", "rubric_version", "criterion_key", "annotator"],
                name="pairwise_label_unique",
            )
        ]


class AssignmentStatus(models.TextChoices):
    RESERVED = "reserved", "Reserved"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"


class ReviewAssignment(models.Model):
    """One annotator's turn on one item: a reservation that expires, then done or skipped.

    An item needs `reviewers_per_item` done assignments; a reservation past `reserved_until` no longer holds a seat.
    """

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_assignments")
    status = models.CharField(max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.RESERVED)
    reserved_until = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="review_assignment_unique")]
        indexes = [models.Index(fields=["annotator", "status"], name="assignment_annotator_status")]


class PairwiseJudgment(models.Model):
    """An LM judge comparing two rollouts of one prompt twice, x shown first then y shown first: position bias.

    Verdicts name the position the judge preferred ("A" = shown first); '' where no verdict could be read.
    A consistent judge's `verdict_swapped` is `verdict_first` with A and B exchanged.
    """

    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    rollout_x = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="+")
    rollout_y = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="+")
    judge_fingerprint = models.CharField(max_length=128, help_text="Model + sampling + pairwise prompt version.")
    judge_model = models.CharField(max_length=200, blank=True)
    verdict_first = models.CharField(max_length=4, blank=True, help_text="x shown as A.")
    verdict_swapped = models.CharField(max_length=4, blank=True, help_text="y shown as A.")
    raw_first = models.TextField(blank=True)
    raw_swapped = models.TextField(blank=True)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rubric_version", "rollout_x", "rollout_y", "judge_fingerprint"], name="pairwise_judgment_unique"
            )
        ]


class RankingLabel(models.Model):
    """A human's ranking of the rollouts of one group, best first (ranking mode). Every pair it implies is a
    preference (exported as preference pairs)."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="rankings")
    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ranking_labels")
    queue = models.ForeignKey(ReviewQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="rankings")
    ranking = models.JSONField(help_text="Rollout ids, best first.")
    comment = models.TextField(blank=True)
    row_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="ranking_label_unique")]


class GoldResponse(models.Model):
    """A corrected ("gold") response an annotator wrote for a rollout's prompt while labeling: SFT data."""

    rollout = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="gold_responses")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gold_responses")
    queue = models.ForeignKey(ReviewQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="gold")
    text = models.TextField()
    row_version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rollout", "annotator"], name="gold_response_unique")]


class PositionCheckJob(MeteredJob):
    """One judge position-swap check: the endpoint's judge compares up to `pairs` pairs of rollouts of one prompt in
    both orders (verdicts land in PairwiseJudgment). Progress counts pairs; a pair without both verdicts is failed."""

    progress_unit = "pairs"

    rubric_version = models.ForeignKey("rubrics.RubricVersion", on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey("endpoints.ModelEndpoint", null=True, on_delete=models.SET_NULL, related_name="+")
    pairs = models.PositiveIntegerField(help_text="Pairs asked for; `total` is the pairs actually left to compare.")

    class Meta:
        indexes = [models.Index(fields=["rubric_version", "-id"], name="position_check_job_version")]

    def __str__(self) -> str:
        return f"position check #{self.pk}"
