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
- verifiers / verifiers_03: a verifiers run, either layout (0.4: traces.jsonl + configs/resolved/eval.json; ≤ 0.3:
  results.jsonl + metadata.json; see `webapp.exports.verifiers_runs`): rollouts with their whole trajectories, linked
  to the task's examples by the taskset's task id or the prompt; every reward component or metric that names a
  criterion of the rubric version as that criterion's score (judge "verifiers"); the run's reward as an external
  score on the rollout (a Rubricon rubric total only when Rubricon wrote the file).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from webapp.core import idempotency, safejson
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.exports import import_rollouts as importers
from webapp.exports import verifiers_runs as vf_runs
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
NEEDS_VERSION = (ExportKind.SFT, ExportKind.PREFERENCES, ExportKind.REWARD_MODEL, ExportKind.REWARD_PAIRS,
                 ExportKind.CALIBRATION)


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
                 unit: str, import_record_id: int | None = None):
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
        self.row_builder = importers._RowBuilder(project, task, unit, import_record_id)
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

    def messages(self, pos: int, record: dict, name: str) -> list[dict] | None:
        """A column of chat messages (a list; JSON text in CSV), or None when the column holds plain text."""
        value = record.get(name)
        if isinstance(value, str) and value.startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
            return importers.clean_messages(value)
        if isinstance(value, list):
            self.fail(pos, f"{name} must be a list of chat messages (objects with a role).")
        return None

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
    messages = ctx.messages(pos, record, "messages") or []
    completion = ctx.text(pos, record, "completion") or vf_runs.last_assistant_text(messages)
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
        ctx.fail(pos, "preference and reward-pair rows name no task; choose a task for the whole file.")
    prompt_messages = ctx.messages(pos, record, "prompt")
    if prompt_messages is None:
        prompt_messages = ctx.json_value(pos, record, "prompt_messages", list) or _chat(
            ctx.text(pos, record, "prompt"), "")[0]
    group = ctx.text(pos, record, "group_key", 64) or f"imp{ctx.token}-{pos}"
    items = []
    for index, side in enumerate(("chosen", "rejected")):
        turns = ctx.messages(pos, record, side)
        if turns is None:  # the completion as text
            turns = [{"role": "assistant", "content": ctx.text(pos, record, side)}]
        row = ctx.rollout(task_id=ctx.task.pk, group_key=group, sample_index=index, prompt_messages=prompt_messages,
                          messages=[*prompt_messages, *turns], completion=vf_runs.last_assistant_text(turns))
        items.append(Item(key=_key(record, f"{side}_rollout_id", pos), rollout=row,
                          total=ctx.number(pos, record, f"{side}_reward")))
    source = record.get("preference_source") or "reward"
    if source not in ("reward", "labels", "ranking"):
        ctx.fail(pos, f"preference_source must be reward, labels or ranking, not {source!r}.")
    # A pair implied by a ranking is a human preference too: it comes back as a pairwise label.
    return items, [Pair(items[0].key, items[1].key)] if source in ("labels", "ranking") else []


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


Reader = Callable[[Context, int, dict], tuple[list[Item], list[Pair]]]
READERS: dict[str, Reader] = {
    ExportKind.ROLLOUTS: _rollouts,
    ExportKind.SFT: _sft,
    ExportKind.PREFERENCES: _preferences,
    ExportKind.REWARD_MODEL: _reward_model,
    ExportKind.REWARD_PAIRS: _preferences,
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
                                 rubric_version=rubric_version, user=user, metadata=metadata,
                                 import_record_id=record.pk)
        idempotency.import_done(record=record, summary=result.summary())
    result.import_id = record.pk
    return result


def _dataset_import(
    *, project: Project, stream: IO[bytes], kind: str, format: str, task: Task | None,
    rubric_version: RubricVersion | None, user: Any, metadata: IO[bytes] | None, import_record_id: int | None = None,
) -> ImportResult:
    if kind in VERIFIERS_KINDS:
        return verifiers_import(project=project, results=stream, metadata=metadata, task=task,
                                rubric_version=rubric_version, import_record_id=import_record_id)
    if kind == ExportKind.ROLLOUTS and rubric_version is None:
        return ImportResult(rollouts=importers.rollouts_import(project=project, stream=stream, format=format, task=task,
                                                               import_record_id=import_record_id))
    found, unit = importers.records(stream, format)
    ctx = Context(project=project, task=task, version=rubric_version, user=user, unit=unit,
                  import_record_id=import_record_id)
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



# --- verifiers runs --------------------------------------------------------------------------------------------------

VERIFIERS_KINDS = (ExportKind.VERIFIERS, ExportKind.VERIFIERS_03)


def _json_file(raw: bytes | None, name: str) -> Any:
    if raw is None:
        return None
    try:
        return safejson.loads(raw)
    except ValueError as error:
        raise ApplicationError(f"{name} is not valid JSON ({error}).", field="metadata") from None


def _read_metadata(raw: bytes | None) -> dict[str, Any]:
    metadata = _json_file(raw, "metadata.json")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ApplicationError("metadata.json must hold a JSON object.", field="metadata")
    return metadata


def _read_config(raw: bytes | None) -> dict[str, Any]:
    config = _json_file(raw, vf_runs.CONFIG_FILE)
    if config is None:
        return {}
    try:
        return vf_runs.read_config(config)
    except vf_runs.LineError as error:
        raise ApplicationError(str(error), field="metadata") from None


def verifiers_import(
    *, project: Project, results: IO[bytes], metadata: IO[bytes] | None = None, task: Task | None = None,
    rubric_version: RubricVersion | None = None, import_record_id: int | None = None,
) -> ImportResult:
    """Import a verifiers run: a zip of the run folder (0.4: traces.jsonl + configs/resolved/eval.json; ≤ 0.3:
    results.jsonl + metadata.json, as our verifiers exports write them too), or the lines file alone with the
    config / metadata file given separately. The layout is read from the file, never guessed from its name."""
    _check(project, ExportKind.VERIFIERS, task, rubric_version)
    importers.check_size(results)
    head = results.read(4)
    results.seek(0)
    if head == b"PK\x03\x04":
        with importers.unzipped(results) as root:
            return verifiers_import_dir(project=project, path=root, task=task, rubric_version=rubric_version,
                                        metadata=metadata, import_record_id=import_record_id)
    if metadata is not None:
        importers.check_size(metadata)
    found = list(importers.READERS["jsonl"][0](results))
    layout = vf_runs.sniff(found[0][1]) if found else None
    if layout is None:
        where = f"line {found[0][0]}: " if found else ""
        raise ApplicationError(f"{where}{vf_runs.NOT_A_RUN}", field="file")
    raw = metadata.read() if metadata is not None else None
    meta = _read_config(raw) if layout == vf_runs.V04 else _read_metadata(raw)
    return _verifiers_run(project, layout, found, meta, task, rubric_version, import_record_id=import_record_id)


def verifiers_import_dir(
    *, project: Project, path: Path, task: Task | None = None, rubric_version: RubricVersion | None = None,
    metadata: IO[bytes] | None = None, import_record_id: int | None = None, **_: Any,
) -> ImportResult:
    """Import a verifiers run folder: traces.jsonl (0.4) or results.jsonl (≤ 0.3), found at any depth, with the
    configs/resolved/eval.json or metadata.json beside it."""
    _check(project, ExportKind.VERIFIERS, task, rubric_version)
    layout, candidates = vf_runs.V04, sorted(path.rglob(vf_runs.TRACES_FILE), key=lambda p: len(p.parts))
    if not candidates:
        layout, candidates = vf_runs.V03, sorted(path.rglob(vf_runs.RESULTS_FILE), key=lambda p: len(p.parts))
    if not candidates:
        raise ApplicationError(
            "Not a verifiers run: no traces.jsonl (verifiers 0.4 writes it with configs/resolved/eval.json) and no "
            "results.jsonl (≤ 0.3, with metadata.json).", field="file")
    lines = candidates[0]
    beside = lines.parent / (vf_runs.CONFIG_FILE if layout == vf_runs.V04 else vf_runs.METADATA_FILE)
    raw = metadata.read() if metadata is not None else beside.read_bytes() if beside.exists() else None
    meta = _read_config(raw) if layout == vf_runs.V04 else _read_metadata(raw)
    with open(lines, "rb") as stream:
        found = list(importers.READERS["jsonl"][0](stream))
    return _verifiers_run(project, layout, found, meta, task, rubric_version, unit=f"{lines.name} line",
                          import_record_id=import_record_id)


class _ExampleLinks:
    """Finds the task's example for a run's rollout: by the taskset's task id, else by the prompt (a task that
    came from Rubricon), else a new example (created once, before the rollouts that point at it)."""

    def __init__(self, task_id: int):
        self.task_id = task_id
        self.by_id: dict[str, int | str] = {}
        self.prompt_of: dict[str, str] = {}
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for pk, external_id, prompt, messages in Example.objects.filter(task_id=task_id).values_list(
            "pk", "external_id", "prompt", "messages"
        ):
            text = prompt or (vf_runs.last_user_text(messages) if isinstance(messages, list) else "")
            self.by_id[external_id] = pk
            self.prompt_of[external_id] = text
            if text:
                by_prompt[text].append(pk)
        self.by_prompt = {text: pks[0] for text, pks in by_prompt.items() if len(pks) == 1}  # ambiguous: not used
        self.new: dict[str, dict] = {}

    def link(self, rollout: vf_runs.RunRollout) -> int | str:
        """The example's pk, or the external id of one to create."""
        if rollout.task_id and rollout.task_id in self.by_id:
            return self.by_id[rollout.task_id]
        if rollout.prompt_text and rollout.prompt_text in self.by_prompt:
            return self.by_prompt[rollout.prompt_text]
        key = (rollout.task_id or (str(rollout.index) if rollout.index is not None else "")
               or "vf-" + hashlib.sha1(rollout.prompt_text.encode()).hexdigest()[:12])[:200]
        if key in self.by_id and self.prompt_of.get(key) != rollout.prompt_text:
            # The id is taken by an example with another prompt (a dataset index is no durable id).
            key = f"{key}-{hashlib.sha1(rollout.prompt_text.encode()).hexdigest()[:8]}"[:200]
        if key not in self.by_id:
            self.by_id[key] = key
            self.prompt_of[key] = rollout.prompt_text
            if rollout.prompt_text:
                self.by_prompt.setdefault(rollout.prompt_text, key)  # type: ignore[arg-type]
            self.new[key] = {"task_id": self.task_id, "external_id": key, "prompt": rollout.prompt_text,
                             "messages": rollout.prompt or None, "answer": rollout.answer, "info": rollout.info,
                             "split": "eval"}
        return self.by_id[key]

    def create(self) -> int:
        examples = [Example(**values) for values in self.new.values()]
        Example.objects.bulk_create(examples)
        for example in examples:
            self.by_id[example.external_id] = example.pk
        self.new.clear()
        return len(examples)


def _verifiers_run(project: Project, layout: str, found: list[tuple[int, Any]], meta: dict, task: Task | None,
                   version: RubricVersion | None, unit: str | None = None,
                   import_record_id: int | None = None) -> ImportResult:
    """Parse every line first (nothing is written for a file that fails on its last line), then write the examples
    it needs, its rollouts, and the scores under the rubric version: each reward component or metric named after a
    criterion becomes that criterion's score. The run's own reward is the environment's, not our rubric's total: it
    stays on the rollout as an external score (`metadata.external_scores.verifiers`: its total, named components
    with their weights, metrics). Only a file Rubricon wrote, whose reward is a Rubricon rubric total, brings
    totals back."""
    name = vf_runs.TRACES_FILE if layout == vf_runs.V04 else vf_runs.RESULTS_FILE
    ctx = Context(project=project, task=task, version=version, user=None, unit=unit or f"{name} line",
                  import_record_id=import_record_id)
    parsed: list[tuple[int, vf_runs.RunRollout]] = []
    for pos, record in found:
        try:
            if layout == vf_runs.V04:
                parsed += [(pos, r) for r in vf_runs.read_episode(record, meta)]
            else:
                parsed.append((pos, vf_runs.read_result(record, meta)))
        except vf_runs.LineError as error:
            ctx.fail(pos, str(error))
    if not parsed:
        raise ApplicationError(f"{name} holds no rollouts.", field="file")
    links: dict[int, _ExampleLinks] = {}
    samples: dict[str, int] = {}
    planned = []
    for pos, rollout in parsed:
        task_id = ctx.task_id(pos, {"task": rollout.task_name})
        if task_id not in links:
            links[task_id] = _ExampleLinks(task_id)
        example = links[task_id].link(rollout)
        group = str(rollout.rubricon.get("group_key") or "")[:64] or (
            f"vf{ctx.token}-{task_id}-{rollout.group or example}")[:64]
        samples[group] = samples.get(group, -1) + 1
        planned.append((pos, rollout, task_id, example, group, samples[group]))
    with transaction.atomic():
        result = ImportResult()
        for task_links in links.values():
            result.examples += task_links.create()
        writer = _Writer(ctx, READERS[ExportKind.ROLLOUTS])
        batch: list[Item] = []
        for n, (pos, rollout, task_id, example, group, index) in enumerate(planned):
            if isinstance(example, str):
                example = links[task_id].by_id[example]
            batch.append(_run_item(ctx, pos, n, rollout, layout, task_id, example, group, index, meta))
            if len(batch) >= BATCH:
                writer.flush(batch)
                batch = []
        writer.flush(batch)
        result.rollouts, result.scores = writer.result.rollouts, writer.result.scores
    return result


def _run_item(ctx: Context, pos: int, n: int, rollout: vf_runs.RunRollout, layout: str, task_id: int,
              example_id: int, group: str, index: int, meta: dict) -> Item:
    ours = rollout.rubricon.get("reward") == "rubric_total"
    metadata: dict[str, Any] = {"info": rollout.info, "answer": rollout.answer, "verifiers": {
        "layout": layout, "metrics": rollout.metrics, **rollout.extra,
        **({"run": meta["run"]} if meta.get("run") else {}),
        **({"sampling": meta["sampling"]} if meta.get("sampling") and "sampling" not in rollout.extra else {}),
    }}
    if not ours and (rollout.reward is not None or rollout.rewards or rollout.metrics):
        metadata["external_scores"] = {"verifiers": {"reward": rollout.reward, "rewards": rollout.rewards,
                                                     "metrics": rollout.metrics}}
    row = ctx.rollout(
        task_id=task_id, example_id=example_id, group_key=group, sample_index=index, model_name=rollout.model,
        prompt_messages=rollout.prompt, messages=[*rollout.prompt, *rollout.completion],
        completion=vf_runs.last_assistant_text(rollout.completion), prompt_tokens=rollout.prompt_tokens,
        completion_tokens=rollout.completion_tokens, finish_reason=rollout.finish_reason,
        latency_ms=rollout.latency_ms, error=rollout.error, metadata=metadata,
    )
    item = Item(key=f"pos:{pos}:{n}", rollout=row, total_judge=IMPORT_JUDGE)
    if ctx.version is None:
        return item
    if ours:
        item.total = ctx.number(pos, {"reward": rollout.reward}, "reward")
    named = {**rollout.metrics, **{k: (v or {}).get("score") for k, v in rollout.rewards.items()}}
    for key, value in named.items():
        if key in ctx.keys and value is not None:
            item.scores.append({"criterion_key": key, "judge_fingerprint": VERIFIERS_JUDGE,
                                "score": ctx.number(pos, named, key, unit_range=True)})
    return item
