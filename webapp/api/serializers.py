"""API representations. Output serializers are model serializers with explicit fields; input serializers only
parse and validate shapes, the services decide (serializers hold no business logic)."""

from __future__ import annotations

from rest_framework import serializers

from webapp.core.models import Project
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.exports.models import Export, ExportFormat, ExportKind
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.reviews.models import HumanLabel, ReviewQueue
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.runs.models import Checkpoint, TrainingMetric, TrainingRun
from webapp.tasks.models import Example, Split, Task, TaskKind


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.CharField(read_only=True)

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "created_at", "role"]
        read_only_fields = ["id", "slug", "created_at", "role"]


class TaskSerializer(serializers.ModelSerializer):
    class Meta:
        model = Task
        fields = [
            "id", "name", "instructions", "system_prompt", "prompt_template", "kind", "environment",
            "environment_config", "created_at", "updated_at", "row_version",
        ]
        read_only_fields = fields


class TaskCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    instructions = serializers.CharField(required=False, allow_blank=True, default="")
    system_prompt = serializers.CharField(required=False, allow_blank=True, default="")
    prompt_template = serializers.CharField(required=False, default="{{ prompt }}")
    kind = serializers.ChoiceField(choices=TaskKind.choices, default=TaskKind.SINGLE_TURN)
    environment = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")


class ExampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Example
        fields = [
            "id", "task", "external_id", "prompt", "messages", "answer", "info", "checklist", "split", "created_at",
            "row_version",
        ]
        read_only_fields = fields


class ExampleCreateSerializer(serializers.Serializer):
    task = serializers.IntegerField(min_value=1)
    external_id = serializers.CharField(max_length=200)
    prompt = serializers.CharField(required=False, allow_blank=True, default="")
    answer = serializers.CharField(required=False, allow_blank=True, default="")
    split = serializers.ChoiceField(choices=Split.choices, default=Split.TRAIN)
    info = serializers.DictField(required=False, default=dict)
    messages = serializers.ListField(child=serializers.DictField(), required=False, allow_null=True, default=None)


class RubricSerializer(serializers.ModelSerializer):
    latest_version = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Rubric
        fields = ["id", "name", "description", "task", "created_at", "latest_version"]
        read_only_fields = fields


class RubricCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    spec = serializers.DictField(help_text="Rubric spec: {\"criteria\": [...]}")
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="Initial version")


class RubricVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = RubricVersion
        fields = ["id", "rubric", "number", "spec", "note", "author", "created_at"]
        read_only_fields = fields


class RubricVersionCreateSerializer(serializers.Serializer):
    rubric = serializers.IntegerField(min_value=1)
    spec = serializers.DictField()
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class EndpointSerializer(serializers.ModelSerializer):
    """Keys are never stored, so never shown: only the name of the environment variable that holds one."""

    class Meta:
        model = ModelEndpoint
        fields = [
            "id", "name", "kind", "base_url", "model", "api_key_env", "default_params", "max_concurrency",
            "requests_per_minute", "tokens_per_minute", "supports_structured_output", "created_at", "row_version",
        ]
        read_only_fields = fields


class EndpointCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=EndpointKind.choices)
    model = serializers.CharField(max_length=300)
    base_url = serializers.URLField(required=False, allow_blank=True, default="")
    api_key_env = serializers.RegexField(
        r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100, required=False, allow_blank=True, default="",
        help_text="Name of the environment variable holding the API key (never the key itself).",
    )
    default_params = serializers.DictField(required=False, default=dict)
    max_concurrency = serializers.IntegerField(min_value=1, max_value=1024, default=8)


class GenerationJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = GenerationJob
        fields = [
            "id", "task", "split", "endpoint", "checkpoint", "model_name", "params", "samples_per_example", "status",
            "total", "done", "failed_count", "error", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields


class RolloutSerializer(serializers.ModelSerializer):
    class Meta:
        model = Rollout
        fields = [
            "id", "task", "example", "job", "run", "step", "source", "model_name", "group_key", "sample_index",
            "prompt_messages", "messages", "completion", "prompt_tokens", "completion_tokens", "finish_reason",
            "latency_ms", "error", "metadata", "created_at",
        ]
        read_only_fields = fields


class JudgeJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = JudgeJob
        fields = [
            "id", "rubric_version", "endpoint", "selection", "status", "total", "done", "failed_count", "calls_made",
            "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "error", "created_at", "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class CriterionScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = CriterionScore
        fields = [
            "id", "rollout", "rubric_version", "criterion_key", "judge_fingerprint", "job", "raw_choice", "score",
            "rationale", "raw_response", "prompt_tokens", "completion_tokens", "latency_ms", "error", "created_at",
        ]
        read_only_fields = fields


class RolloutScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = RolloutScore
        fields = ["id", "rollout", "rubric_version", "judge_fingerprint", "job", "total", "error", "created_at"]
        read_only_fields = fields


class ReviewQueueSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReviewQueue
        fields = [
            "id", "name", "rubric_version", "selection", "strategy", "mode", "reviewers_per_item", "blind",
            "reservation_minutes", "created_at",
        ]
        read_only_fields = fields


class HumanLabelSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username", read_only=True)

    class Meta:
        model = HumanLabel
        fields = [
            "id", "rollout", "rubric_version", "criterion_key", "annotator", "queue", "choice", "value", "comment",
            "reward_hacking", "row_version", "created_at", "updated_at",
        ]
        read_only_fields = fields


class HumanLabelCreateSerializer(serializers.Serializer):
    rollout = serializers.IntegerField(min_value=1)
    rubric_version = serializers.IntegerField(min_value=1)
    criterion_key = serializers.CharField(max_length=64)
    choice = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    value = serializers.FloatField(min_value=0.0, max_value=1.0, required=False, allow_null=True, default=None)
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    reward_hacking = serializers.BooleanField(required=False, default=False)


class HumanLabelUpdateSerializer(serializers.Serializer):
    row_version = serializers.IntegerField(
        min_value=1, help_text="The row_version you read; a stale one answers 409 with the current label."
    )
    choice = serializers.CharField(max_length=200, required=False, allow_blank=True)
    value = serializers.FloatField(min_value=0.0, max_value=1.0, required=False, allow_null=True)
    comment = serializers.CharField(required=False, allow_blank=True)
    reward_hacking = serializers.BooleanField(required=False)


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id", "name", "task", "rubric_version", "judge_endpoint", "base_model", "config", "status", "hostname",
            "output_dir", "error", "calibration_override", "calibration_note", "created_at", "started_at",
            "finished_at", "heartbeat_at",
        ]
        read_only_fields = fields


class TrainingMetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingMetric
        fields = ["id", "run", "step", "metrics", "created_at"]
        read_only_fields = fields


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "run", "step", "path", "created_at"]
        read_only_fields = fields


class ExportSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id", "kind", "format", "filters", "status", "row_count", "total", "error", "created_at", "started_at",
            "finished_at", "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, export: Export) -> str | None:
        if not export.file:
            return None
        return f"/api/v1/projects/{export.project_id}/exports/{export.pk}/download/"


class ExportCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ExportKind.choices)
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    filters = serializers.DictField(
        required=False, default=dict,
        help_text="task, job, run, rubric_version, split, source, score_min, score_max, label_status, threshold, "
        "margin, preference_source, limit",
    )


class RolloutImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A rollouts export: JSONL, CSV or Parquet.")
    format = serializers.ChoiceField(choices=[("jsonl", "jsonl"), ("csv", "csv"), ("parquet", "parquet")])
    task = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                    help_text="Put every row in this task; empty = the file's 'task' column.")


class ImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField()


ROW_VERSION_HELP = "The row_version you read; a stale one answers 409 with the current values."


class TaskUpdateSerializer(serializers.Serializer):
    row_version = serializers.IntegerField(min_value=1, help_text=ROW_VERSION_HELP)
    name = serializers.CharField(max_length=200, required=False)
    instructions = serializers.CharField(required=False, allow_blank=True)
    system_prompt = serializers.CharField(required=False, allow_blank=True)
    prompt_template = serializers.CharField(required=False)
    kind = serializers.ChoiceField(choices=TaskKind.choices, required=False)
    environment = serializers.CharField(max_length=64, required=False, allow_blank=True)
    environment_config = serializers.DictField(required=False)


class ExampleUpdateSerializer(serializers.Serializer):
    row_version = serializers.IntegerField(min_value=1, help_text=ROW_VERSION_HELP)
    prompt = serializers.CharField(required=False, allow_blank=True)
    answer = serializers.CharField(required=False, allow_blank=True)
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    info = serializers.DictField(required=False)


class EndpointUpdateSerializer(serializers.Serializer):
    row_version = serializers.IntegerField(min_value=1, help_text=ROW_VERSION_HELP)
    name = serializers.CharField(max_length=200, required=False)
    kind = serializers.ChoiceField(choices=EndpointKind.choices, required=False)
    model = serializers.CharField(max_length=300, required=False)
    base_url = serializers.URLField(required=False, allow_blank=True)
    api_key_env = serializers.CharField(max_length=100, required=False, allow_blank=True)
    default_params = serializers.DictField(required=False)
    max_concurrency = serializers.IntegerField(min_value=1, max_value=1024, required=False)
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=10**9, required=False, allow_null=True)
    tokens_per_minute = serializers.IntegerField(min_value=1, max_value=10**12, required=False, allow_null=True)
    supports_structured_output = serializers.BooleanField(required=False)


class JudgeJobCreateSerializer(serializers.Serializer):
    rubric_version = serializers.IntegerField(min_value=1)
    endpoint = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                        help_text="Judge endpoint; needed when the rubric has LM-judge criteria.")
    selection = serializers.DictField(required=False, default=dict, help_text="Rollout filters (as in the browser).")
