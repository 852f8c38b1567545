"""Import what every export kind writes, and verifiers eval outputs, back into rollouts with their scores and labels.

Each kind has a row reader that turns one record into `Item`s (a rollout plus its scores and labels) or raises an
error naming the record's line or row. Items go into the database in batches inside one transaction: the whole
file or nothing.

What comes back, per kind (ids of the source project are not kept; `rollout_id` columns only tie rows together):

- rollouts: the rollouts; with a rubric version also their total reward, per-criterion judge scores and the human
  labels of annotators who are members of this project.
- sft / reward_model: one rollout per row with its reward (and, for reward-model data, per-criterion scores) under
  the rubric version. SFT rows are the best of each group, so only those come back.
- preferences: the chosen and the rejected rollout of each pair, in one group, with their rewards; pairs that came
  from human pairwise labels come back as pairwise labels by the importing user.
- calibration: the labeled rollouts, each human label (annotators must be members) and the judge's output.
- verifiers: `vf-eval` results (results.jsonl + metadata.json): rollouts, `reward` as the total and every metric
  that names a criterion of the rubric version as that criterion's score, under an "imported" judge.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from webapp.core import safejson
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.exports import idempotency, importers
from webapp.exports.models import ExportKind
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel, PairwiseLabel, Preference
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.rubrics.models import RubricVersion
from webapp.tasks.models import Example, Task

IMPORT_JUDGE = "import"  # judge_fingerprint of scores whose judge the file does not name
VERIFIERS_JUDGE = "verifiers"
BATCH = 1000
KINDS = tuple(ExportKind.values)
NEEDS_VERSION = (ExportKind.SFT, ExportKind.PREFERENCES, ExportKind.REWARD_MODEL, ExportKind.CALIBRATION)


@dataclass
class ImportResult:
    rollouts: int = 0
    scores: int = 0
    labels: int = 0
    pairwise_labels: int = 0
    examples: int = 0
    import_id: int | None = None  # the ImportRecord that makes a retry of this file recognisable

    def summary(self) -> str:
        parts = [f"{self.rollouts} rollouts"]
        for count, noun in ((self.scores, "scores"), (self.labels, "labels"), (self.pairwise_labels, "pairwise labels"),
                            (self.examples, "new examples")):
            if count:
                parts.append(f"{count} {noun}")
        return ", ".join(parts)


@dataclass
class Item:
    """One rollout to create (or, when `key` was seen before in the file, the one already created) and what hangs
    off it."""

    key: str
    rollout: dict[str, Any]
    total: float | None = None
    total_judge: str = IMPORT_JUDGE
    scores: list[dict[str, Any]] = field(default_factory=list)  # criterion_key, judge_fingerprint, score, ...
    labels: list[dict[str, Any]] = field(default_factory=list)  # criterion_key, annotator_id, value, ...


@dataclass
class Pair:
    chosen: str
    rejected: str


class Context:
    """What row readers share: the project, the fixed task or version, caches of names, and error reporting."""

    def __init__(self, *, project: Project, task: Task | None, version: RubricVersion | None, user: Any,
                 unit: str):
        self.project = project
        self.task = task
        self.version = version
        self.user = user
        self.unit = unit
        self.keys = {c.get("key") for c in version.criteria} if version is not None else set()
        self.annotators: dict[str, int] = {}
        self.now = timezone.now()
        self.token = uuid.uuid4().hex[:8]
        # Task and example lookups, with their caches, are the rollout importer's: one set of rules and messages.
        self.row_builder = importers._RowBuilder(project, task, unit)
        self.task_id = self.row_builder.task_id
        self.example_id = self.row_builder.example_id
        self.known_examples = self.row_builder.known_examples

    def fail(self, pos: int, message: str) -> NoReturn:
        raise ApplicationError(f"{self.unit} {pos}: {message}")

    # --- fields ---------------------------------------------------------------------------------------------------

    def text(self, pos: int, record: dict, name: str, limit: int | None = None) -> str:
        value = record.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(pos, f"{name} must be text.")
        if limit and len(value) > limit:
            self.fail(pos, f"{name} is longer than {limit} characters.")
        return value

    def number(self, pos: int, record: dict, name: str, *, unit_range: bool = False) -> float | None:
        value = record.get(name)
        if value is None or value == "":
            return None
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            self.fail(pos, f"{name} must be a number, not {value!r}.")
        if unit_range and not 0.0 <= number <= 1.0:
            self.fail(pos, f"{name} must be between 0 and 1, not {value!r}.")
        return number

    def json_value(self, pos: int, record: dict, name: str, kind: type) -> Any:
        value = record.get(name)
        if value is None or value == "":
            return kind()
        if isinstance(value, str):  # tabular formats carry JSON as text
            try:
                value = safejson.loads(value)
            except ValueError:
                self.fail(pos, f"{name} is not valid JSON.")
        if not isinstance(value, kind):
            self.fail(pos, f"{name} must be a JSON {'list' if kind is list else 'object'}.")
        return value

    def boolean(self, record: dict, name: str) -> bool:
        value = record.get(name)
        return value in (True, 1, "true", "True", "1")

    def criterion(self, pos: int, key: Any) -> str:
        if not isinstance(key, str) or key not in self.keys:
            self.fail(pos, f"criterion {key!r} is not in rubric version {self.version}; import into a version "
                           "that has it.")
        return key

    def annotator(self, pos: int, username: Any) -> int:
        if not isinstance(username, str) or not username:
            self.fail(pos, "the label names no annotator.")
        if username not in self.annotators:
            found = get_user_model().objects.filter(
                username=username, memberships__project=self.project
            ).values_list("pk", flat=True).first()
            if found is None:
                self.fail(pos, f"annotator {username!r} is not a member of this project; add them first, or import "
                               "without a rubric version to leave the labels out.")
            self.annotators[username] = found
        return self.annotators[username]

    def rollout(self, **values: Any) -> dict[str, Any]:
        base = {"project_id": self.project.pk, "source": RolloutSource.IMPORT, "sample_index": 0, "model_name": "",
                "prompt_messages": [], "messages": [], "completion": "", "finish_reason": "", "error": "",
                "metadata": {}, "example_id": None, "step": None, "prompt_tokens": None, "completion_tokens": None,
                "latency_ms": None}
        base.update(values)
        return base


def _chat(prompt: str, completion: str) -> tuple[list[dict], list[dict]]:
    prompt_messages = [{"role": "user", "content": prompt}] if prompt else []
    return prompt_messages, [*prompt_messages, {"role": "assistant", "content": completion}]


def _prompt_of(messages: list, prompt: str) -> list:
    """The messages before the first assistant turn (the prompt of a trajectory), else the prompt text as a turn."""
    for i, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            return messages[:i]
    return _chat(prompt, "")[0]


# --- one reader per kind ---------------------------------------------------------------------------------------------


def _rollouts(ctx: Context, pos: int, record: dict) -> tuple[list[Item], list[Pair]]:
    item = Item(key=_key(record, "rollout_id", pos), rollout=_rollout_row(ctx, pos, record))
    if ctx.version is None:
        return [item], []
    item.total = ctx.number(pos, record, "reward")
    for score in ctx.json_value(pos, record, "criterion_scores", list):
        if not isinstance(score, dict):
            ctx.fail(pos, "criterion_scores must be a list of objects.")
        item.scores.append({
            "criterion_key": ctx.criterion(pos, score.get("criterion_key")),
            "judge_fingerprint": str(score.get("judge") or IMPORT_JUDGE)[:128],
            "score": ctx.number(pos, score, "score", unit_range=True),
            "raw_choice": ctx.text(pos, score, "raw_choice", 200), "rationale": ctx.text(pos, score, "rationale"),
        })
    for label in ctx.json_value(pos, record, "labels", list):
        if not isinstance(label, dict):
            ctx.fail(pos, "labels must be a list of objects.")
        item.labels.append({
            "criterion_key": ctx.criterion(pos, label.get("criterion_key")),
            "annotator_id": ctx.annotator(pos, label.get("annotator")),
            "value": ctx.number(pos, label, "value", unit_range=True), "choice": ctx.text(pos, label, "choice", 200),
            "comment": ctx.text(pos, label, "comment"), "reward_hacking": ctx.boolean(label, "reward_hacking"),
        })
    return [item], []


def _rollout_row(ctx: Context, pos: int, record: dict) -> dict[str, Any]:
    """A full rollouts-export row, validated exactly as the fast importer validates it."""
    values = dict(zip(importers.DB_COLUMNS, ctx.row_builder.build(pos, record), strict=True))
    for name in importers.JSON_FIELDS:
        values[name] = json.loads(values[name])
    values.pop("created_at")
    return values


def _key(record: dict, name: str, pos: int) -> str:
    value = record.get(name)
    return f"id:{value}" if value not in (None, "") else f"pos:{pos}:{name}"


def _sft(ctx: Context, pos: int, record: dict) -> tuple[list[Item], list[Pair]]:
    task_id = ctx.task_id(pos, record)
    completion = ctx.text(pos, record, "completion")
    messages = ctx.json_value(pos, record, "messages", list)
    prompt_messages = ctx.json_value(pos, record, "prompt_messages", list)
    if not messages:
        prompt_messages, messages = _chat(ctx.text(pos, record, "prompt"), completion)
    row = ctx.rollout(task_id=task_id, example_id=ctx.example_id(pos, task_id, record.get("example_id")),
                      group_key=ctx.text(pos, record, "group_key", 64) or f"imp{ctx.token}-{pos}",
                      prompt_messages=prompt_messages or _prompt_of(messages, ""), messages=messages,
                      completion=completion)
    return [Item(key=_key(record, "rollout_id", pos), rollout=row, total=ctx.number(pos, record, "reward"))], []


def _preferences(ctx: Context, pos: int, record: dict) -> tuple[list[Item], list[Pair]]:
    if ctx.task is None:
        ctx.fail(pos, "preference rows name no task; choose a task for the whole file.")
    prompt_messages = ctx.json_value(pos, record, "prompt_messages", list) or _chat(
        ctx.text(pos, record, "prompt"), "")[0]
    group = ctx.text(pos, record, "group_key", 64) or f"imp{ctx.token}-{pos}"
    items = []
    for index, side in enumerate(("chosen", "rejected")):
        completion = ctx.text(pos, record, side)
        row = ctx.rollout(task_id=ctx.task.pk, group_key=group, sample_index=index, prompt_messages=prompt_messages,
                          messages=[*prompt_messages, {"role": "assistant", "content": completion}],
                          completion=completion)
        items.append(Item(key=_key(record, f"{side}_rollout_id", pos), rollout=row,
                          total=ctx.number(pos, record, f"{side}_reward")))
    source = record.get("preference_source") or "reward"
    if source not in ("reward", "labels"):
        ctx.fail(pos, f"preference_source must be reward or labels, not {source!r}.")
    return items, [Pair(items[0].key, items[1].key)] if source == "labels" else []


def _reward_model(ctx: Context, pos: int, record: dict) -> tuple[list[Item], list[Pair]]:
    task_id = ctx.task_id(pos, record)
    completion = ctx.text(pos, record, "completion")
    messages = ctx.json_value(pos, record, "messages", list)
    prompt = ctx.text(pos, record, "prompt")
    if not messages:
        messages = _chat(prompt, completion)[1]
    row = ctx.rollout(task_id=task_id, example_id=ctx.example_id(pos, task_id, record.get("example_id")),
                      group_key=ctx.text(pos, record, "group_key", 64) or f"imp{ctx.token}-{pos}",
                      prompt_messages=_prompt_of(messages, prompt), messages=messages, completion=completion)
    item = Item(key=_key(record, "rollout_id", pos), rollout=row, total=ctx.number(pos, record, "reward"))
    for key, score in ctx.json_value(pos, record, "criterion_scores", dict).items():
        item.scores.append({"criterion_key": ctx.criterion(pos, key), "judge_fingerprint": IMPORT_JUDGE,
                            "score": ctx.number(pos, {key: score}, key, unit_range=True)})
    return [item], []


def _calibration(ctx: Context, pos: int, record: dict) -> tuple[list[Item], list[Pair]]:
    if ctx.task is None:
        ctx.fail(pos, "calibration rows name no task; choose a task for the whole file.")
    key = ctx.criterion(pos, record.get("criterion_key"))
    rollout_key = _key(record, "rollout_id", pos)
    prompt_messages, messages = _chat(ctx.text(pos, record, "prompt"), ctx.text(pos, record, "completion"))
    row = ctx.rollout(task_id=ctx.task.pk, group_key=f"imp{ctx.token}-{rollout_key}"[:64],
                      prompt_messages=prompt_messages, messages=messages, completion=messages[-1]["content"])
    item = Item(key=rollout_key, rollout=row)
    item.labels.append({
        "criterion_key": key, "annotator_id": ctx.annotator(pos, record.get("annotator")),
        "value": ctx.number(pos, record, "human_value", unit_range=True),
        "choice": ctx.text(pos, record, "human_choice", 200), "comment": ctx.text(pos, record, "human_comment"),
        "reward_hacking": ctx.boolean(record, "reward_hacking"),
    })
    judge = record.get("judge")
    if judge not in (None, ""):
        item.scores.append({
            "criterion_key": key, "judge_fingerprint": str(judge)[:128],
            "score": ctx.number(pos, record, "judge_score", unit_range=True),
            "raw_choice": ctx.text(pos, record, "judge_choice", 200),
            "rationale": ctx.text(pos, record, "judge_rationale"),
        })
    return [item], []


# --- verifiers ---------------------------------------------------------------------------------------------------

# Columns of a vf-eval results row that are not metrics (old and new layouts).
VERIFIERS_FIELDS = {
    "id", "example_id", "prompt", "completion", "answer", "task", "info", "reward", "error", "timing",
    "is_completed", "is_truncated", "stop_condition", "metrics", "tool_defs", "token_usage", "generation_ms",
    "scoring_ms", "total_ms", "error_chain", "long_error_chain", "rollout_id", "group_key", "oai_tools", "state",
}


class VerifiersReader:
    """Rows of one vf-eval output: grouped by example into GRPO groups, the model from metadata.json."""

    def __init__(self, metadata: dict[str, Any]):
        self.metadata = metadata
        self.model = str(metadata.get("model") or "")[:300]
        self.env = str(metadata.get("env_id") or metadata.get("env") or "")
        self.samples: dict[str, int] = {}
        self.created: dict[str, dict] = {}  # external id -> ExampleData kwargs for examples the task lacks

    def __call__(self, ctx: Context, pos: int, record: dict) -> tuple[list[Item], list[Pair]]:
        task_id = ctx.task_id(pos, record)
        raw_id = record.get("example_id", record.get("id"))
        if raw_id is None or raw_id == "" or isinstance(raw_id, (dict, list, bool)):
            ctx.fail(pos, "example_id is missing (vf-eval writes one per row).")
        external_id = str(raw_id)[:200]
        prompt = self._messages(ctx, pos, record.get("prompt"), "user", "prompt")
        completion = self._messages(ctx, pos, record.get("completion"), "assistant", "completion")
        info = ctx.json_value(pos, record, "info", dict)
        answer = record.get("answer") if isinstance(record.get("answer"), str) else ""
        if external_id not in ctx.known_examples(task_id):
            self.created.setdefault(f"{task_id}:{external_id}", {
                "task_id": task_id, "external_id": external_id, "answer": answer, "info": info,
                "prompt": _last_user(prompt), "messages": prompt or None,
            })
        group = ctx.text(pos, record, "group_key", 64) or f"vf{ctx.token}-{task_id}-{external_id}"[:64]
        index = self.samples.get(group, 0)
        self.samples[group] = index + 1
        usage = record.get("token_usage") if isinstance(record.get("token_usage"), dict) else {}
        timing = record.get("timing") if isinstance(record.get("timing"), dict) else {}
        latency = timing.get("total_ms", record.get("total_ms"))
        truncated = bool(record.get("is_truncated"))
        metrics = self._metrics(ctx, pos, record)
        extra = {k: record[k] for k in ("timing", "is_completed", "is_truncated", "stop_condition", "tool_defs",
                                        "token_usage") if record.get(k) is not None}
        extra.update({k: self.metadata[k] for k in ("sampling_args", "env_args") if self.metadata.get(k)})
        row = ctx.rollout(
            task_id=task_id, example_id=None, group_key=group, sample_index=index, model_name=self.model,
            prompt_messages=prompt, messages=[*prompt, *completion], completion=_last_assistant(completion),
            prompt_tokens=_count(usage.get("input_tokens")), completion_tokens=_count(usage.get("output_tokens")),
            finish_reason="length" if truncated else "", latency_ms=_count(latency), error=_error_text(record),
            metadata={"info": info, "answer": answer, "verifiers": {"env": self.env, "example_id": raw_id,
                                                                  "metrics": metrics, **extra}},
        )
        row["_example"] = (task_id, external_id)
        item = Item(key=_key(record, "rollout_id", pos), rollout=row, total_judge=VERIFIERS_JUDGE)
        if ctx.version is not None:
            item.total = ctx.number(pos, record, "reward")
            for key, value in metrics.items():
                if key in ctx.keys and value is not None:
                    item.scores.append({"criterion_key": key, "judge_fingerprint": VERIFIERS_JUDGE,
                                        "score": ctx.number(pos, metrics, key, unit_range=True)})
        return [item], []

    def _messages(self, ctx: Context, pos: int, value: Any, role: str, name: str) -> list[dict]:
        if value is None:
            return []
        if isinstance(value, str):
            try:
                parsed = safejson.loads(value) if value.startswith("[") else value
            except ValueError:
                parsed = value
            if isinstance(parsed, str):  # completion-format environments: plain text
                return [{"role": role, "content": parsed}]
            value = parsed
        if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
            ctx.fail(pos, f"{name} must be a list of chat messages (objects with a role) or text.")
        return value

    def _metrics(self, ctx: Context, pos: int, record: dict) -> dict[str, float | None]:
        found = dict(record.get("metrics") or {}) if isinstance(record.get("metrics"), dict) else {}
        for name, value in record.items():
            if name not in VERIFIERS_FIELDS and (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                 or value is None):
                found.setdefault(name, value)
        for name, value in found.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                ctx.fail(pos, f"metric {name!r} must be a number, not {value!r}.")
        return found


def _last_user(messages: list[dict]) -> str:
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else ""


def _last_assistant(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return ""
    return ""


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return min(round(value), 2**31 - 1)


def _error_text(record: dict) -> str:
    error = record.get("error")
    if error in (None, ""):
        return ""
    if isinstance(error, dict):
        return str(error.get("error_chain_str") or error.get("error") or json.dumps(error))
    return str(error)


Reader = Callable[[Context, int, dict], tuple[list[Item], list[Pair]]]
READERS: dict[str, Reader] = {
    ExportKind.ROLLOUTS: _rollouts,
    ExportKind.SFT: _sft,
    ExportKind.PREFERENCES: _preferences,
    ExportKind.REWARD_MODEL: _reward_model,
    ExportKind.CALIBRATION: _calibration,
}


# --- writing ---------------------------------------------------------------------------------------------------------


class _Writer:
    """Batches items into bulk inserts; a rollout seen again under the same key is the one already written."""

    def __init__(self, ctx: Context, reader: Reader):
        self.ctx = ctx
        self.reader = reader
        self.ids: dict[str, int] = {}
        self.score_keys: set[tuple] = set()
        self.total_keys: set[tuple] = set()
        self.label_keys: set[tuple] = set()
        self.pairs: list[Pair] = []
        self.result = ImportResult()

    def run(self, found: Iterator[tuple[int, Any]]) -> ImportResult:
        batch: list[Item] = []
        for pos, record in found:
            if not isinstance(record, dict):
                self.ctx.fail(pos, "expected an object with named fields.")
            items, pairs = self.reader(self.ctx, pos, record)
            batch.extend(items)
            self.pairs.extend(pairs)
            if len(batch) >= BATCH:
                self.flush(batch)
                batch = []
        self.flush(batch)
        self.flush_pairs()
        return self.result

    def flush(self, batch: list[Item]) -> None:
        if not batch:
            return
        new: list[tuple[Item, Rollout]] = []
        pending: dict[str, Rollout] = {}
        for item in batch:
            if item.key in self.ids or item.key in pending:
                continue
            values = dict(item.rollout)
            values.pop("_example", None)
            pending[item.key] = Rollout(**values)
            new.append((item, pending[item.key]))
        Rollout.objects.bulk_create([r for _, r in new])
        for item, rollout in new:
            self.ids[item.key] = rollout.pk
        self.result.rollouts += len(new)
        version = self.ctx.version
        if version is None:
            return
        scores, totals, labels = [], [], []
        for item in batch:
            rollout_id = self.ids[item.key]
            if item.total is not None and (rollout_id, item.total_judge) not in self.total_keys:
                self.total_keys.add((rollout_id, item.total_judge))
                totals.append(RolloutScore(rollout_id=rollout_id, rubric_version=version,
                                           judge_fingerprint=item.total_judge, total=item.total))
            for score in item.scores:
                unique = (rollout_id, score["criterion_key"], score["judge_fingerprint"])
                if unique not in self.score_keys:
                    self.score_keys.add(unique)
                    scores.append(CriterionScore(rollout_id=rollout_id, rubric_version=version, **score))
            for label in item.labels:
                unique = (rollout_id, label["criterion_key"], label["annotator_id"])
                if unique not in self.label_keys:
                    self.label_keys.add(unique)
                    labels.append(HumanLabel(rollout_id=rollout_id, rubric_version=version, **label))
        RolloutScore.objects.bulk_create(totals)
        CriterionScore.objects.bulk_create(scores)
        HumanLabel.objects.bulk_create(labels)
        self.result.scores += len(scores) + len(totals)
        self.result.labels += len(labels)

    def flush_pairs(self) -> None:
        if not self.pairs or self.ctx.version is None:
            return
        if self.ctx.user is None:
            raise ApplicationError("Pairwise labels are imported as the importing user's; import as a user.")
        seen, rows = set(), []
        for pair in self.pairs:
            a, b = self.ids[pair.chosen], self.ids[pair.rejected]
            if (a, b) not in seen and a != b:
                seen.add((a, b))
                rows.append(PairwiseLabel(rollout_a_id=a, rollout_b_id=b, rubric_version=self.ctx.version,
                                          annotator=self.ctx.user, preferred=Preference.A, shown_a_first=True))
        PairwiseLabel.objects.bulk_create(rows)
        self.result.pairwise_labels = len(rows)


class _VerifiersWriter(_Writer):
    """Creates the examples a vf-eval output refers to but the task lacks, before the rollouts that point at them."""

    def flush(self, batch: list[Item]) -> None:
        reader = self.reader
        assert isinstance(reader, VerifiersReader)
        if reader.created:
            examples = [Example(task_id=e["task_id"], external_id=e["external_id"], prompt=e["prompt"],
                                answer=e["answer"], info=e["info"], messages=e["messages"], split="eval")
                        for e in reader.created.values()]
            Example.objects.bulk_create(examples)
            for example in examples:
                self.ctx.known_examples(example.task_id)[example.external_id] = example.pk
            self.result.examples += len(examples)
            reader.created.clear()
        for item in batch:
            task_id, external_id = item.rollout["_example"]
            item.rollout["example_id"] = self.ctx.known_examples(task_id)[external_id]
        super().flush(batch)


# --- entry points ------------------------------------------------------------------------------------------------


def _check(project: Project, kind: str, task: Task | None, version: RubricVersion | None) -> None:
    if kind not in KINDS:
        raise ApplicationError(f"Unknown import kind {kind!r}; use {', '.join(KINDS)}.", field="kind")
    if task is not None and task.project_id != project.pk:
        raise ApplicationError("That task belongs to another project.", field="task")
    if version is not None and version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", field="rubric_version")
    if kind in NEEDS_VERSION and version is None:
        raise ApplicationError(f"A {ExportKind(kind).label} import needs a rubric version: its rewards, scores and "
                               "labels are stored under it.", field="rubric_version")


def dataset_import(
    *, project: Project, stream: IO[bytes], kind: str, format: str, task: Task | None = None,
    rubric_version: RubricVersion | None = None, user: Any = None, metadata: IO[bytes] | None = None,
    allow_duplicate: bool = False, idempotency_key: str = "",
) -> ImportResult:
    """Import a file an export wrote (or a vf-eval output for kind 'verifiers'): all of it or nothing, and once:
    the same file into the same task/version again answers 'already imported as #N' unless `allow_duplicate`."""
    _check(project, kind, task, rubric_version)
    importers.check_size(stream)
    sha256 = idempotency.file_sha256(stream)
    if metadata is not None:
        sha256 = hashlib.sha256(f"{sha256}|{idempotency.file_sha256(metadata)}".encode()).hexdigest()
    with transaction.atomic():
        record = idempotency.import_claim(
            project=project, kind=kind, sha256=sha256, filename=Path(str(getattr(stream, "name", "") or "")).name, user=user,
            task=task, rubric_version=rubric_version, idempotency_key=idempotency_key,
            allow_duplicate=allow_duplicate)
        result = _dataset_import(project=project, stream=stream, kind=kind, format=format, task=task,
                                 rubric_version=rubric_version, user=user, metadata=metadata)
        idempotency.import_done(record=record, summary=result.summary())
    result.import_id = record.pk
    return result


def _dataset_import(
    *, project: Project, stream: IO[bytes], kind: str, format: str, task: Task | None,
    rubric_version: RubricVersion | None, user: Any, metadata: IO[bytes] | None,
) -> ImportResult:
    if kind == ExportKind.VERIFIERS:
        return verifiers_import(project=project, results=stream, metadata=metadata, task=task,
                                rubric_version=rubric_version)
    if kind == ExportKind.ROLLOUTS and rubric_version is None:
        return ImportResult(rollouts=importers.rollouts_import(project=project, stream=stream, format=format, task=task))
    found, unit = importers.records(stream, format)
    ctx = Context(project=project, task=task, version=rubric_version, user=user, unit=unit)
    with transaction.atomic():
        result = _Writer(ctx, READERS[kind]).run(found)
        if result.rollouts == 0:
            raise ApplicationError("The file holds no rows.")
    return result


def dataset_import_path(*, path: Path, format: str | None = None, **kwargs: Any) -> ImportResult:
    if path.is_dir():
        return verifiers_import_dir(path=path, **{k: v for k, v in kwargs.items() if k != "kind"})
    with open(path, "rb") as stream:
        return dataset_import(stream=stream, format=format or importers.format_for(path), **kwargs)


def _read_metadata(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        metadata = safejson.loads(raw)
    except ValueError as error:
        raise ApplicationError(f"metadata.json is not valid JSON ({error}).", field="metadata") from None
    if not isinstance(metadata, dict):
        raise ApplicationError("metadata.json must hold a JSON object.", field="metadata")
    return metadata


def verifiers_import(
    *, project: Project, results: IO[bytes], metadata: IO[bytes] | None = None, task: Task | None = None,
    rubric_version: RubricVersion | None = None,
) -> ImportResult:
    """Import a vf-eval output: a zip holding results.jsonl and metadata.json (as our verifiers export writes it,
    or the output folder zipped), or results.jsonl with metadata.json given separately."""
    _check(project, ExportKind.VERIFIERS, task, rubric_version)
    importers.check_size(results)
    head = results.read(4)
    results.seek(0)
    if head == b"PK\x03\x04":
        with importers.unzipped(results) as root:
            return verifiers_import_dir(project=project, path=root, task=task, rubric_version=rubric_version,
                                        metadata=metadata)
    if metadata is not None:
        importers.check_size(metadata)
    meta = _read_metadata(metadata.read() if metadata is not None else None)
    return _verifiers_rows(project, results, meta, task, rubric_version)


def verifiers_import_dir(
    *, project: Project, path: Path, task: Task | None = None, rubric_version: RubricVersion | None = None,
    metadata: IO[bytes] | None = None, **_: Any,
) -> ImportResult:
    """Import a vf-eval output folder (results.jsonl and metadata.json, found at any depth)."""
    _check(project, ExportKind.VERIFIERS, task, rubric_version)
    found = sorted(path.rglob("results.jsonl"), key=lambda p: len(p.parts))
    if not found:
        raise ApplicationError("No results.jsonl found (vf-eval writes results.jsonl and metadata.json).",
                               field="file")
    results = found[0]
    meta_path = results.parent / "metadata.json"
    raw = metadata.read() if metadata is not None else meta_path.read_bytes() if meta_path.exists() else None
    with open(results, "rb") as stream:
        return _verifiers_rows(project, stream, _read_metadata(raw), task, rubric_version)


def _verifiers_rows(project: Project, stream: IO[bytes], metadata: dict, task: Task | None,
                    version: RubricVersion | None) -> ImportResult:
    ctx = Context(project=project, task=task, version=version, user=None, unit="results.jsonl line")
    reader = VerifiersReader(metadata)
    with transaction.atomic():
        result = _VerifiersWriter(ctx, reader).run(importers.READERS["jsonl"][0](stream))
        if result.rollouts == 0:
            raise ApplicationError("results.jsonl holds no rows.")
    return result
