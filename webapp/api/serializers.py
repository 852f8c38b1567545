"""API representations. Output serializers are model serializers with explicit fields; input serializers only
parse and validate shapes, the services decide (serializers hold no business logic)."""

from __future__ import annotations

import math

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from training.grpo.config import PRESETS
from webapp.core.models import Project
from webapp.core.params import MAX_ID
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.exports.import_rollouts import FORMATS as IMPORT_FORMATS
from webapp.exports.models import Export, ExportFormat, ExportKind, HubPush
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.reviews.models import (
    GoldResponse,
    HumanLabel,
    RankingLabel,
    ReviewItem,
    ReviewMode,
    ReviewQueue,
    SamplingStrategy,
)
from webapp.rollouts.models import GenerationJob, Rollout, RolloutSource
from webapp.rollouts.rendering import render_markdown
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


class ReasoningGymImportSerializer(serializers.Serializer):
    dataset = serializers.RegexField(r"^[a-z0-9_]{1,64}$", help_text="A reasoning-gym dataset name, e.g. "
                                                                    "basic_arithmetic or chain_sum.")
    size = serializers.IntegerField(min_value=1, max_value=10_000)
    seed = serializers.IntegerField(min_value=0, max_value=2**32 - 1)
    config = serializers.DictField(required=False, default=dict,
                                   help_text="Other config fields of the dataset; empty = its defaults.")
    task_name = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    eval_size = serializers.IntegerField(required=False, default=0, min_value=0,
                                         help_text="The last N examples go to the eval split.")
    with_rubric = serializers.BooleanField(required=False, default=True,
                                           help_text="Also create a rubric scoring with the dataset's score_answer.")


class VerifiersTaskSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    taskset = serializers.DictField(help_text='The verifiers taskset config: {"id": "<plugin>", ...options}, e.g. '
                                              '{"id": "textarena", "game": "Wordle-v0"}; the plugin must be allowed '
                                              "by the operator (RUBRICON_VERIFIERS_PLUGINS).")
    harness = serializers.DictField(required=False, default=dict,
                                    help_text='The harness config, default {"id": "rubricon_chat"}.')
    count = serializers.IntegerField(min_value=1, max_value=1000, help_text="Taskset tasks to make examples of.")
    max_turns = serializers.IntegerField(min_value=1, max_value=100, required=False, allow_null=True, default=None)


class ReasoningGymImportResultSerializer(serializers.Serializer):
    task = serializers.IntegerField()
    examples = serializers.IntegerField()
    rubric = serializers.IntegerField(allow_null=True)
    rubric_version = serializers.IntegerField(allow_null=True)


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
    # Checked by the endpoint service (one rule for the form and the API): capital letters, digits and _, and a name
    # the operator allows (RUBRICON_ENDPOINT_KEY_VARS).
    api_key_env = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default="",
        help_text="Name of the environment variable holding the API key (never the key itself), e.g. OPENAI_API_KEY; "
                  "the operator decides which names are allowed (RUBRICON_ENDPOINT_KEY_VARS).",
    )
    default_params = serializers.DictField(required=False, default=dict)
    max_concurrency = serializers.IntegerField(min_value=1, max_value=1024, default=8)


class GenerationJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = GenerationJob
        fields = [
            "id", "task", "split", "endpoint", "checkpoint", "model_name", "params", "samples_per_example",
            "example_count", "example_seed", "status",
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
            "reservation_minutes", "created_at", "guidelines", "guidelines_rubric_version",
        ]
        read_only_fields = fields


class GuidelinesSerializer(serializers.ModelSerializer):
    """A queue's labeling guidelines: markdown, and the same text rendered and sanitized as annotators see it."""

    guidelines_html = serializers.SerializerMethodField()
    updated_by = serializers.CharField(source="guidelines_updated_by.username", read_only=True, allow_null=True,
                                       default=None)
    updated_at = serializers.DateTimeField(source="guidelines_updated_at", read_only=True, allow_null=True)
    rubric_version = serializers.PrimaryKeyRelatedField(
        source="guidelines_rubric_version", read_only=True, allow_null=True,
        help_text="The rubric version they were written for (a new queue inherits its rubric's newest guidelines).")
    outdated = serializers.SerializerMethodField(help_text="Written for another version than the queue's.")

    class Meta:
        model = ReviewQueue
        fields = ["guidelines", "guidelines_html", "rubric_version", "outdated", "updated_at", "updated_by"]
        read_only_fields = fields

    def get_guidelines_html(self, queue: ReviewQueue) -> str:
        return render_markdown(queue.guidelines) if queue.guidelines else ""

    def get_outdated(self, queue: ReviewQueue) -> bool:
        written_for = queue.guidelines_rubric_version_id
        return bool(queue.guidelines) and written_for is not None and written_for != queue.rubric_version_id


class GuidelinesUpdateSerializer(serializers.Serializer):
    guidelines = serializers.CharField(allow_blank=True, trim_whitespace=False,
                                       help_text="Markdown; an empty text removes them.")


class ReviewItemSerializer(serializers.ModelSerializer):
    """An item of a queue: the rollouts it shows (never the sampler's priority, which may be a judge score)."""

    class Meta:
        model = ReviewItem
        fields = ["id", "queue", "position", "rollout", "rollout_b", "shown_a_first", "group_rollout_ids",
                  "completed_count"]
        read_only_fields = fields


class GoldResponseSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username", read_only=True)

    class Meta:
        model = GoldResponse
        fields = ["id", "rollout", "annotator", "queue", "text", "row_version", "created_at", "updated_at"]
        read_only_fields = fields


class GoldResponseCreateSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=MAX_ID,
                                    help_text="The review item you are labeling (reserved for you).")
    rollout = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True, default=None,
                                       help_text="One of the item's rollouts; empty = the item's rollout.")
    text = serializers.CharField(trim_whitespace=False, help_text="The corrected response (exported as SFT data).")


class GoldResponseUpdateSerializer(serializers.Serializer):
    row_version = serializers.IntegerField(
        min_value=1, max_value=MAX_ID,
        help_text="The row_version you read; a stale one answers 409 with the saved text.")
    text = serializers.CharField(allow_blank=True, trim_whitespace=False,
                                 help_text="The corrected response; an empty text deletes it (204).")


class RankingLabelSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username", read_only=True)

    class Meta:
        model = RankingLabel
        fields = ["id", "item", "queue", "rubric_version", "annotator", "ranking", "comment", "row_version",
                  "created_at", "updated_at"]
        read_only_fields = fields


class RankingField(serializers.ListField):
    child = serializers.IntegerField(min_value=1, max_value=MAX_ID)

    def __init__(self, **kwargs):
        super().__init__(min_length=2, max_length=256,
                         help_text="Every rollout of the item's group once, by id, best first.", **kwargs)


class RankingLabelCreateSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=MAX_ID,
                                    help_text="A ranking-mode review item you hold (reserved for you).")
    ranking = RankingField()
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


class RankingLabelUpdateSerializer(serializers.Serializer):
    row_version = serializers.IntegerField(
        min_value=1, max_value=MAX_ID, help_text="The row_version you read; a stale one answers 409.")
    ranking = RankingField()
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=10_000)


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


class HubPushSerializer(serializers.ModelSerializer):
    class Meta:
        model = HubPush
        fields = ["id", "export", "repo_id", "private", "token_env", "status", "error", "url", "commit_oid", "files",
                  "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class HubPushCreateSerializer(serializers.Serializer):
    repo_id = serializers.CharField(max_length=200, help_text="namespace/name of the dataset repo on the Hub "
                                                              "(created if missing).")
    private = serializers.BooleanField(required=False, default=True)
    token_env = serializers.CharField(
        max_length=128, help_text="Environment variable of the worker that holds the Hub token (e.g. HF_TOKEN); the "
                                  "operator decides which names are allowed (RUBRICON_ENDPOINT_KEY_VARS).")


class ExportSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()
    hub_pushes = serializers.SerializerMethodField()
    row_count = serializers.IntegerField(source="done", read_only=True, help_text="Rows written so far.")

    class Meta:
        model = Export
        fields = [
            "id", "kind", "format", "filters", "status", "row_count", "total", "error", "created_at", "started_at",
            "finished_at", "download_url", "hub_pushes",
        ]
        read_only_fields = fields

    @extend_schema_field(HubPushSerializer(many=True))
    def get_hub_pushes(self, export: Export) -> list[dict]:
        """The export's pushes to the Hub, newest first."""
        return HubPushSerializer(sorted(export.hub_pushes.all(), key=lambda p: -p.pk)[:20], many=True).data

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
        "margin, preference_source, agreement (agree | disagree), agreement_tolerance, limit",
    )


class RolloutImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="An export file: JSONL, CSV, Parquet or the Hugging Face zip; for kind "
                                           "verifiers a run (zip of the folder, or traces.jsonl / results.jsonl).")
    format = serializers.ChoiceField(choices=[(f, f) for f in IMPORT_FORMATS], required=False, default="jsonl",
                                     help_text="hf = the Hugging Face datasets zip an export writes. Ignored for "
                                               "verifiers.")
    kind = serializers.ChoiceField(choices=ExportKind.choices, required=False, default=ExportKind.ROLLOUTS,
                                   help_text="The export kind the file holds (verifiers = vf-eval output).")
    task = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                    help_text="Put every row in this task; empty = the file's 'task' column.")
    rubric_version = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, default=None,
        help_text="Store the file's rewards, judge scores and labels under this rubric version (needed for sft, "
                  "preferences, reward_model and calibration files).")
    metadata = serializers.FileField(required=False, allow_null=True, default=None,
                                     help_text="verifiers: configs/resolved/eval.json (0.4) or metadata.json "
                                               "(≤ 0.3), when file is the lines file.")
    allow_duplicate = serializers.BooleanField(
        required=False, default=False,
        help_text="Import the file even if the same file was imported into the same task/version before; "
                  "otherwise such a retry answers 409 'already imported as import #N'.")


class ImportResultSerializer(serializers.Serializer):
    import_id = serializers.IntegerField(help_text="The import record; a retry of the same file answers 409 naming it.")
    imported = serializers.IntegerField(help_text="Rollouts created.")
    scores = serializers.IntegerField(help_text="Judge scores and rewards created.")
    labels = serializers.IntegerField(help_text="Human labels created.")
    pairwise_labels = serializers.IntegerField()
    examples = serializers.IntegerField(help_text="Examples created for a verifiers output's prompts.")


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


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know: a misspelt filter must not silently select everything."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: f"Unknown field; use one of {', '.join(sorted(self.fields))}." for key in unknown})
        return super().to_internal_value(data)


class FiniteFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("invalid")
        return value


class JudgeSelectionSerializer(StrictSerializer):
    """The rollouts a judge job scores: the rollout browser's filters, each with its type checked."""

    task = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    job = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    run = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False)
    model = serializers.CharField(max_length=300, required=False, allow_blank=True)
    source = serializers.ChoiceField(choices=RolloutSource.choices, required=False)
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), required=False,
                                max_length=100_000, help_text="Exactly these rollouts.")
    errors_only = serializers.BooleanField(required=False)
    q = serializers.CharField(max_length=200, required=False, allow_blank=True, help_text="Text in the completion.")
    labeled = serializers.ChoiceField(choices=[("yes", "yes"), ("no", "no")], required=False,
                                      help_text="yes = rollouts with human labels, no = without.")
    rubric_version = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False,
                                              help_text="The version score_min / score_max refer to.")
    score_min = FiniteFloatField(min_value=0, max_value=1, required=False)
    score_max = FiniteFloatField(min_value=0, max_value=1, required=False)

    def validate(self, attrs):
        if ("score_min" in attrs or "score_max" in attrs) and not attrs.get("rubric_version"):
            raise serializers.ValidationError({"rubric_version": "score_min / score_max need a rubric_version."})
        return attrs


class JudgeJobCreateSerializer(serializers.Serializer):
    rubric_version = serializers.IntegerField(min_value=1)
    endpoint = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                        help_text="Judge endpoint; needed when the rubric has LM-judge criteria.")
    selection = JudgeSelectionSerializer(required=False, default=dict, help_text="Rollout filters (as in the browser).")


class GenerationParamsSerializer(serializers.Serializer):
    temperature = serializers.FloatField(min_value=0, max_value=10, required=False)
    max_tokens = serializers.IntegerField(min_value=1, max_value=32768, required=False, help_text="Per turn.")
    top_p = serializers.FloatField(min_value=0.01, max_value=1, required=False)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)


class GenerationJobCreateSerializer(serializers.Serializer):
    task = serializers.IntegerField(min_value=1)
    endpoint = serializers.IntegerField(min_value=1, help_text="Model endpoint that generates the rollouts.")
    split = serializers.ChoiceField(choices=[("", "all"), *Split.choices], required=False, default="",
                                    help_text="Empty = every example.")
    samples_per_example = serializers.IntegerField(min_value=1, max_value=256, default=4,
                                                   help_text="The GRPO group size: completions per prompt.")
    params = GenerationParamsSerializer(required=False, default=dict, help_text="Sampling parameters.")
    example_count = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                             help_text="A seeded random sample of this many examples; empty = all.")
    example_seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, default=0,
                                            help_text="Seed of the example sample.")


class TrainingRunCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    preset = serializers.ChoiceField(choices=[(k, k) for k in PRESETS], default="cpu-smoke")
    task = serializers.IntegerField(min_value=1)
    split = serializers.ChoiceField(choices=[("", "all"), *Split.choices], required=False, default=Split.TRAIN)
    rubric_version = serializers.IntegerField(min_value=1, help_text="Its criteria are the reward functions.")
    judge_endpoint = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None,
                                              help_text="Needed when the rubric has LM-judge criteria.")
    base_model = serializers.CharField(max_length=300, required=False, default="bundled",
                                       help_text="'bundled', a model path or hub id, or 'checkpoint:<id>'.")
    options = serializers.DictField(required=False, default=dict,
                                    help_text="GRPO config fields that override the preset (num_generations, "
                                              "learning_rate, max_steps, lora, ...).")

    # Set by the service from the task, rubric version and endpoint; never from the request.
    RESERVED_OPTIONS = frozenset({"model", "examples", "system_prompt", "rubric", "python_allowlist",
                                  "rubric_version_id", "judge", "preset"})

    def validate_options(self, value: dict) -> dict:
        reserved = sorted(self.RESERVED_OPTIONS & set(value))
        if reserved:
            raise serializers.ValidationError(
                f"{reserved[0]!r} comes from the run's task, rubric version, endpoint or preset; set it there.")
        return value
    calibration_override = serializers.BooleanField(required=False, default=False,
                                                    help_text="Train on a judge not calibrated against humans.")
    calibration_note = serializers.CharField(required=False, allow_blank=True, default="",
                                             help_text="Why, when calibration_override is set (kept with the run).")


class ReviewSelectionSerializer(StrictSerializer):
    task = serializers.IntegerField(min_value=1, required=False)
    job = serializers.IntegerField(min_value=1, required=False)
    run = serializers.IntegerField(min_value=1, required=False)
    model = serializers.CharField(max_length=300, required=False, allow_blank=True)
    source = serializers.ChoiceField(choices=RolloutSource.choices, required=False)
    q = serializers.CharField(max_length=200, required=False, allow_blank=True, help_text="Text in the completion.")


class ReviewQueueCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    rubric_version = serializers.IntegerField(min_value=1)
    strategy = serializers.ChoiceField(choices=SamplingStrategy.choices, default=SamplingStrategy.RANDOM)
    mode = serializers.ChoiceField(choices=ReviewMode.choices, default=ReviewMode.CRITERIA)
    size = serializers.IntegerField(min_value=1, max_value=5000, default=50, help_text="Items to sample.")
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0, help_text="Same seed, same sample.")
    reviewers_per_item = serializers.IntegerField(min_value=1, max_value=10, default=1)
    reservation_minutes = serializers.IntegerField(min_value=1, max_value=7 * 24 * 60, default=30)
    blind = serializers.BooleanField(default=True, help_text="Hide judge scores until the label is submitted.")
    assignees = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list,
                                      help_text="User ids (project members); empty = open pool of annotators.")
    selection = ReviewSelectionSerializer(required=False, default=dict,
                                          help_text="Which rollouts to sample from (the rollout browser's filters).")
    guidelines = serializers.CharField(required=False, allow_null=True, allow_blank=True, default=None,
                                       trim_whitespace=False,
                                       help_text="Labeling guidelines (markdown); omitted or null = the newest "
                                                 "guidelines written for any version of the rubric.")
