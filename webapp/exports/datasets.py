"""What each export kind contains: a fixed list of typed columns and a stream of row tuples.

Rows are read in id-ordered chunks (keyset, so every chunk costs the same) with the SQL the ORM compiles, run on
a plain cursor: no model instances and no JSON decoding, JSON columns travel as the database's JSON text.
Scores and labels are fetched once per chunk, so memory stays flat however many rows there are.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet, Subquery

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.exports import verifiers_runs as vf_runs
from webapp.exports.copy_rows import LINES, CopySource, object_sql
from webapp.exports.models import ExportKind
from webapp.exports.selectors import AGREEMENT_TOLERANCE, rollout_selection
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.criteria import form_criteria
from webapp.reviews.dashboard import criterion_steps
from webapp.reviews.labeling import ranking_pairs
from webapp.reviews.models import GoldResponse, HumanLabel, PairwiseLabel, Preference, RankingLabel
from webapp.reviews.selectors import label_gap
from webapp.rollouts.models import Rollout
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.selectors import rubric_versions_of_project

INT, FLOAT, STR, BOOL, JSON = "int", "float", "str", "bool", "json"
# A list of chat messages: JSON in JSONL and CSV, a list of structs in Parquet and Hugging Face datasets (what TRL's
# conversational formats expect), never JSON text there.
MESSAGES = "messages"
CHUNK = 2000


@dataclass(frozen=True)
class Column:
    name: str
    type: str


@dataclass
class Dataset:
    """Columns, a row iterator, and for the verifiers format the metadata written next to the rows."""

    columns: list[Column]
    rows: Iterator[tuple]
    total: int
    metadata: dict[str, Any] = field(default_factory=dict)
    # The same rows as SQL for COPY (Postgres only; see copy_rows), where a kind has it.
    copy: CopySource | None = None


def _cols(spec: str) -> list[Column]:
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        out.append(Column(name, kind or STR))
    return out


ROLLOUT_FIELDS = (
    "id", "task__name", "example__external_id", "example__split", "example__prompt", "example__answer", "job_id",
    "run_id", "step", "source", "model_name", "group_key", "sample_index", "prompt_messages", "messages", "completion",
    "prompt_tokens", "completion_tokens", "finish_reason", "latency_ms", "error", "metadata",
)
ROLLOUT_COLUMNS = _cols(
    "rollout_id:int task example_id split prompt answer job_id:int run_id:int step:int source model_name group_key "
    "sample_index:int prompt_messages:json messages:json completion prompt_tokens:int completion_tokens:int "
    "finish_reason latency_ms:int error metadata:json reward:float criterion_scores:json labels:json"
)


def _raw_rows(queryset: QuerySet) -> list[tuple]:
    """Run the ORM's SQL on a plain cursor: tuples as the driver returns them (JSON stays text)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _id_chunks(queryset: QuerySet, fields: tuple[str, ...], *, limit: int | None, chunk: int = CHUNK):
    """Yield lists of value tuples (first field is the id), in id order, `chunk` rows at a time."""
    last, left = 0, limit
    while left is None or left > 0:
        size = chunk if left is None else min(chunk, left)
        rows = _raw_rows(queryset.filter(pk__gt=last).order_by("pk").values_list(*fields)[:size])
        if not rows:
            return
        yield rows
        last = rows[-1][0]
        if left is not None:
            left -= len(rows)
        if len(rows) < size:
            return


def _prompt_text(example_prompt: str | None, prompt_messages: str | None) -> str:
    if example_prompt:
        return example_prompt
    try:
        messages = json.loads(prompt_messages or "[]")
    except ValueError:
        return ""
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else ""


def _for_rollouts(queryset: QuerySet, ids: list[int]) -> QuerySet:
    """Rows of the chunk's rollouts. A dense chunk (the usual case) is an id range, far cheaper to build and plan
    than thousands of IN values; the caller ignores rows of rollouts outside the chunk."""
    low, high = min(ids), max(ids)
    if high - low < 2 * len(ids):
        return queryset.filter(rollout_id__gte=low, rollout_id__lte=high)
    return queryset.filter(rollout_id__in=ids)


def _scores_by_rollout(ids: list[int], version: int | None) -> dict[int, list[dict]]:
    scores = _for_rollouts(CriterionScore.objects.all(), ids)
    if version:
        scores = scores.filter(rubric_version_id=version)
    out: dict[int, list[dict]] = defaultdict(list)
    for rid, rv, key, judge, score, choice, rationale in _raw_rows(
        scores.order_by("rollout_id", "criterion_key", "id").values_list(
            "rollout_id", "rubric_version_id", "criterion_key", "judge_fingerprint", "score", "raw_choice", "rationale"
        )
    ):
        out[rid].append({"rubric_version": rv, "criterion_key": key, "judge": judge, "score": score,
                         "raw_choice": choice, "rationale": rationale})
    return out


def _rewards(ids: list[int], version: int | None) -> dict[int, float | None]:
    totals = _for_rollouts(RolloutScore.objects.all(), ids)
    if version:
        totals = totals.filter(rubric_version_id=version)
    # Without a version, the latest total wins (rows come in id order).
    return dict(_raw_rows(totals.order_by("id").values_list("rollout_id", "total")))


def _labels_by_rollout(ids: list[int], version: int | None) -> dict[int, list[dict]]:
    labels = _for_rollouts(HumanLabel.objects.all(), ids)
    if version:
        labels = labels.filter(rubric_version_id=version)
    out: dict[int, list[dict]] = defaultdict(list)
    for rid, rv, key, who, value, choice, comment, hacking in _raw_rows(
        labels.order_by("rollout_id", "criterion_key", "id").values_list(
            "rollout_id", "rubric_version_id", "criterion_key", "annotator__username", "value", "choice", "comment",
            "reward_hacking",
        )
    ):
        out[rid].append({"rubric_version": rv, "criterion_key": key, "annotator": who, "value": value,
                         "choice": choice, "comment": comment, "reward_hacking": bool(hacking)})
    return out


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _rollouts(project: Project, filters: dict) -> Dataset:
    selection = rollout_selection(project, filters)
    version = filters.get("rubric_version")

    def rows() -> Iterator[tuple]:
        for chunk in _id_chunks(selection, ROLLOUT_FIELDS, limit=filters.get("limit")):
            ids = [r[0] for r in chunk]
            scores, rewards, labels = _scores_by_rollout(ids, version), _rewards(ids, version), _labels_by_rollout(ids, version)
            for r in chunk:
                rid = r[0]
                yield (*r, rewards.get(rid), _dumps(scores.get(rid, [])), _dumps(labels.get(rid, [])))

    labeled: list[bool] = []

    def sql(shape: str, after: int, size: int, upto: int | None) -> tuple[str, list[Any]]:
        if not labeled:  # no labels at all: no label lookup per row (asked once, at the first chunk)
            labels = HumanLabel.objects.filter(rollout__project=project)
            labeled.append((labels.filter(rubric_version_id=version) if version else labels).exists())
        return _rollouts_sql(selection, version, shape, after, size, upto, labels=labeled[0])

    return Dataset(ROLLOUT_COLUMNS, rows(), _count(selection, filters),
                   copy=CopySource(sql, partial(_boundary, selection), limit=filters.get("limit")))


def _boundary(selection: QuerySet, after: int, size: int) -> int | None:
    """The id of the `size`-th row of the selection above `after` (an index scan of ids), or None."""
    ids = list(selection.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[size - 1:size])
    return ids[0] if ids else None


def _table(model: Any) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# Rollout columns of the export read from the rollout row itself.
_ROLLOUT_OWN = frozenset({
    "job_id", "run_id", "step", "source", "model_name", "group_key", "sample_index", "prompt_messages", "messages",
    "completion", "prompt_tokens", "completion_tokens", "finish_reason", "latency_ms", "error", "metadata",
})


def _rollouts_sql(
    selection: QuerySet, version: int | None, shape: str, after: int, size: int, upto: int | None = None, *,
    labels: bool = True,
) -> tuple[str, list[Any]]:
    """The rows of `_rollouts` for COPY (see copy_rows). LINES: one JSON object per line, built by Postgres, the
    same columns, key order and values as the Python rows through the JSONL writer. COLUMNS: the export's columns
    in order, raw (JSON columns as their JSON text, the scores and labels as the JSON the Python rows hold), for
    Arrow's CSV reader."""
    from webapp.rollouts.models import Rollout
    from webapp.tasks.models import Example, Task

    columns = [c for c in ROLLOUT_COLUMNS if c.type not in (JSON, MESSAGES)] + [
        c for c in ROLLOUT_COLUMNS if c.type in (JSON, MESSAGES)]  # the writer's key order
    own = ["id", "task_id", "example_id", *(c.name for c in columns if c.name in _ROLLOUT_OWN)]
    # The chunk's rollouts in id order (the primary key's order: no sort); every other table is looked up per row
    # (OFFSET 0 keeps each lateral a nested loop, so the order holds and Postgres sorts nothing).
    chunk = selection.filter(pk__gt=after) if upto is None else selection.filter(pk__gt=after, pk__lte=upto)
    rows_sql, params = chunk.order_by("pk").values(*own)[:size].query.sql_with_params()
    user = HumanLabel._meta.get_field("annotator").related_model
    v = f" AND {{a}}.rubric_version_id = {int(version)}" if version else ""
    score = object_sql([
        ("rubric_version", INT, "cs.rubric_version_id"), ("criterion_key", STR, "cs.criterion_key"),
        ("judge", STR, "cs.judge_fingerprint"), ("score", FLOAT, "cs.score"), ("raw_choice", STR, "cs.raw_choice"),
        ("rationale", STR, "cs.rationale"),
    ])
    label = object_sql([
        ("rubric_version", INT, "hl.rubric_version_id"), ("criterion_key", STR, "hl.criterion_key"),
        ("annotator", STR, "u.username"), ("value", FLOAT, "hl.value"), ("choice", STR, "hl.choice"),
        ("comment", STR, "hl.comment"), ("reward_hacking", BOOL, "COALESCE(hl.reward_hacking, false)"),
    ])
    exprs = {
        "rollout_id": "r.id", "task": "t.name", "example_id": "e.external_id", "split": "e.split",
        "prompt": "e.prompt", "answer": "e.answer", "reward": "rs.total",
        # Scalar subqueries: as lateral joins these cost several times as much.
        "criterion_scores": f"""COALESCE((SELECT '[' || string_agg({score}, ',' ORDER BY cs.criterion_key, cs.id) || ']'
                                           FROM {_table(CriterionScore)} cs
                                          WHERE cs.rollout_id = r.id{v.format(a="cs")}), '[]')""",
        "labels": "'[]'" if not labels else f"""COALESCE((SELECT '[' || string_agg({label}, ',' ORDER BY hl.criterion_key, hl.id) || ']'
                                 FROM {_table(HumanLabel)} hl JOIN {_table(user)} u ON u.id = hl.annotator_id
                                WHERE hl.rollout_id = r.id{v.format(a="hl")}), '[]')""",
    }
    not_null = {"rollout_id", "task", "criterion_scores", "labels"} | {
        name for name in _ROLLOUT_OWN if not Rollout._meta.get_field(name.removesuffix("_id")).null}
    if shape == LINES:
        values = object_sql([(c.name, c.type, exprs.get(c.name, f"r.{c.name}"), c.name not in not_null)
                             for c in columns])
    else:
        values = ", ".join(exprs.get(c.name, f"r.{c.name}") for c in ROLLOUT_COLUMNS)
    sql = f"""
        SELECT {values}
          FROM ({rows_sql}) r ({", ".join(own)})
          JOIN LATERAL (SELECT t.name FROM {_table(Task)} t WHERE t.id = r.task_id OFFSET 0) t ON true
          LEFT JOIN LATERAL (SELECT e.external_id, e.split, e.prompt, e.answer FROM {_table(Example)} e
                              WHERE e.id = r.example_id OFFSET 0) e ON true
          LEFT JOIN LATERAL (SELECT rs.total FROM {_table(RolloutScore)} rs
                              WHERE rs.rollout_id = r.id{v.format(a="rs")} ORDER BY rs.id DESC LIMIT 1) rs ON true
         ORDER BY r.id"""
    return sql, list(params)


def _count(queryset: QuerySet, filters: dict) -> int:
    total = queryset.count()
    return min(total, filters["limit"]) if "limit" in filters else total


def _version(project: Project, filters: dict, kind: str) -> RubricVersion:
    version_id = filters.get("rubric_version")
    if not version_id:
        raise ApplicationError(f"A {kind} export needs a rubric_version: rewards come from its scores.",
                               field="rubric_version")
    version = rubric_versions_of_project(project).filter(pk=version_id).first()
    if version is None:
        raise ApplicationError("No such rubric version in this project.", field="rubric_version")
    return version


def _with_score(queryset: QuerySet, version: RubricVersion) -> QuerySet:
    return queryset.filter(Exists(RolloutScore.objects.filter(rollout=OuterRef("pk"), rubric_version=version)))


def _scored(project: Project, filters: dict, version: RubricVersion) -> QuerySet:
    """Scored rollouts of the selection annotated with `reward`, ordered group by group, best first."""
    reward = RolloutScore.objects.filter(
        rollout=OuterRef("pk"), rubric_version=version, total__isnull=False
    ).order_by("-id").values("total")[:1]
    return (
        rollout_selection(project, filters).annotate(reward=Subquery(reward)).filter(reward__isnull=False)
        .order_by("group_key", "-reward", "id")
    )


GROUP_FIELDS = ("id", "group_key", "reward", "task__name", "example__external_id", "example__prompt",
                "prompt_messages", "messages", "completion")


def _groups(queryset: QuerySet, limit: int | None) -> Iterator[list[tuple]]:
    """Consecutive rows sharing a group_key (the queryset is ordered by group), streamed."""
    if limit:
        queryset = queryset[:limit]
    group: list[tuple] = []
    for row in queryset.values_list(*GROUP_FIELDS).iterator(chunk_size=CHUNK):
        if group and row[1] != group[0][1]:
            yield group
            group = []
        group.append(row)
    if group:
        yield group


# TRL's conversational formats: SFT `messages`; preference and reward-model pairs `prompt` / `chosen` / `rejected`
# as message lists. No other TRL column (`prompt`, `completion`, ...) may be text beside them: TRL tells a
# conversational dataset by one of those columns, picked from a set (so by PYTHONHASHSEED).
SFT_COLUMNS = _cols("messages:messages reward:float rollout_id:int group_key task example_id group_size:int")


def _turns(prompt_messages: Any, messages: Any, completion: str) -> tuple[list, list]:
    """(the prompt the rollout was sampled with, system prompt included; the turns after it)."""
    return vf_runs.split_prompt(_json(prompt_messages, []), _json(messages, []), completion)


def _sft(project: Project, filters: dict) -> Dataset:
    """The best rollout of each group. A group whose best reward is 0 (or less) taught nothing and is left out,
    unless a threshold is given: then the best must reach it (threshold 0 keeps every group)."""
    if filters.get("sft_source") == "gold":
        return _gold_sft(project, filters)
    version = _version(project, filters, "SFT")
    queryset = _scored(project, filters, version)
    threshold = filters.get("threshold")

    def rows() -> Iterator[tuple]:
        for group in _groups(queryset, filters.get("limit")):
            rid, key, reward, task, ext, _, pmsgs, msgs, completion = group[0]
            if reward < threshold if threshold is not None else reward <= 0:
                continue
            prompt, turns = _turns(pmsgs, msgs, completion)
            yield (_dumps([*prompt, *turns]), reward, rid, key, task, ext, len(group))

    return Dataset(SFT_COLUMNS, rows(), _count(queryset, filters))


def _gold_sft(project: Project, filters: dict) -> Dataset:
    """Annotators' corrected responses: the rollout's prompt, then the gold text as the assistant's answer. Reward is
    the rollout's total under the rubric version when one is given (the gold text itself was never scored)."""
    golds = GoldResponse.objects.filter(rollout__in=rollout_selection(project, filters)).order_by("id")
    fields = ("id", "rollout_id", "text", "rollout__group_key", "rollout__task__name", "rollout__example__external_id",
              "rollout__prompt_messages", "rollout__messages", "rollout__completion")
    version = filters.get("rubric_version")

    def rows() -> Iterator[tuple]:
        for chunk in _id_chunks(golds, fields, limit=filters.get("limit")):
            rewards = _rewards([r[1] for r in chunk], version) if version else {}
            for _, rid, text, key, task, ext, pmsgs, msgs, completion in chunk:
                prompt, _ = _turns(pmsgs, msgs, completion)
                yield (_dumps([*prompt, {"role": "assistant", "content": text}]), rewards.get(rid), rid, key, task,
                       ext, 1)

    return Dataset(SFT_COLUMNS, rows(), _count(golds, filters))


def _text(value: Any) -> str | None:
    """JSON from values_list(...).iterator() arrives decoded; columns of kind json carry JSON text."""
    return value if value is None or isinstance(value, str) else _dumps(value)


PAIR_COLUMNS = _cols(
    "prompt:messages chosen:messages rejected:messages chosen_reward:float rejected_reward:float margin:float "
    "chosen_rollout_id:int rejected_rollout_id:int group_key"
)
PREFERENCE_COLUMNS = [*PAIR_COLUMNS, Column("preference_source", STR)]


def _pair(best: tuple, worst: tuple) -> tuple:
    """prompt / chosen / rejected message lists of two rows of one group (GROUP_FIELDS), with rewards and ids."""
    prompt, chosen = _turns(best[6], best[7], best[8])
    _, rejected = _turns(worst[6], worst[7], worst[8])
    return (_dumps(prompt), _dumps(chosen), _dumps(rejected), best[2], worst[2], best[2] - worst[2], best[0],
            worst[0], best[1])


def _preferences(project: Project, filters: dict) -> Dataset:
    version = _version(project, filters, "preference")
    if filters.get("preference_source") == "labels":
        return _preferences_from_labels(project, filters, version)
    if filters.get("preference_source") == "ranking":
        return _preferences_from_rankings(project, filters, version)
    queryset = _scored(project, filters, version)
    margin = filters.get("margin")

    def rows() -> Iterator[tuple]:
        for group in _groups(queryset, filters.get("limit")):
            if len(group) < 2:
                continue
            best, worst = group[0], group[-1]
            gap = best[2] - worst[2]
            if gap <= 0 or (margin is not None and gap < margin):
                continue
            yield (*_pair(best, worst), "reward")

    return Dataset(PREFERENCE_COLUMNS, rows(), _count(queryset, filters))


def _preferences_from_labels(project: Project, filters: dict, version: RubricVersion) -> Dataset:
    selection = rollout_selection(project, filters)
    labels = (
        PairwiseLabel.objects.filter(rubric_version=version, rollout_a__in=selection, rollout_b__in=selection)
        .exclude(preferred=Preference.TIE).order_by("id")
    )
    fields = ("id", "preferred", "rollout_a_id", "rollout_b_id", "rollout_a__completion", "rollout_b__completion",
              "rollout_a__prompt_messages", "rollout_a__messages", "rollout_b__prompt_messages",
              "rollout_b__messages", "rollout_a__group_key")

    def rows() -> Iterator[tuple]:
        for chunk in _id_chunks(labels, fields, limit=filters.get("limit")):
            ids = [r[2] for r in chunk] + [r[3] for r in chunk]
            rewards = _rewards(ids, version.pk)
            for _, preferred, a, b, a_text, b_text, a_prompt, a_msgs, b_prompt, b_msgs, group in chunk:
                a_row, b_row = (a, a_prompt, a_msgs, a_text), (b, b_prompt, b_msgs, b_text)
                (chosen, c_prompt, c_msgs, c_text), (rejected, _, r_msgs, r_text) = (
                    (a_row, b_row) if preferred == Preference.A else (b_row, a_row))
                prompt, chosen_turns = _turns(c_prompt, c_msgs, c_text)
                _, rejected_turns = _turns(c_prompt, r_msgs, r_text)
                cr, rr = rewards.get(chosen), rewards.get(rejected)
                gap = cr - rr if cr is not None and rr is not None else None
                yield (_dumps(prompt), _dumps(chosen_turns), _dumps(rejected_turns), cr, rr, gap, chosen, rejected,
                       group, "labels")

    return Dataset(PREFERENCE_COLUMNS, rows(), _count(labels, filters))


def _preferences_from_rankings(project: Project, filters: dict, version: RubricVersion) -> Dataset:
    """Every pair a human ranking implies (n·(n−1)/2 per ranking of n responses), better one chosen."""
    selection = rollout_selection(project, filters)
    rankings = RankingLabel.objects.filter(rubric_version=version, item__rollout__in=selection).order_by("id")
    limit = filters.get("limit")

    def rows() -> Iterator[tuple]:
        emitted = 0
        for chunk in _id_chunks(rankings, ("id", "ranking"), limit=None):
            ids = {int(r) for _, ranking in chunk for r in _json(ranking, [])}
            rollouts = {row[0]: row for row in Rollout.objects.filter(pk__in=ids, project=project).values_list(
                "id", "prompt_messages", "messages", "completion", "group_key")}
            rewards = _rewards(list(ids), version.pk)
            for _, ranking in chunk:
                for chosen, rejected in ranking_pairs([int(r) for r in _json(ranking, [])]):
                    if chosen not in rollouts or rejected not in rollouts:
                        continue
                    c, r = rollouts[chosen], rollouts[rejected]
                    prompt, chosen_turns = _turns(c[1], c[2], c[3])
                    _, rejected_turns = _turns(c[1], r[2], r[3])
                    cr, rr = rewards.get(chosen), rewards.get(rejected)
                    gap = cr - rr if cr is not None and rr is not None else None
                    yield (_dumps(prompt), _dumps(chosen_turns), _dumps(rejected_turns), cr, rr, gap, chosen, rejected,
                           c[4], "ranking")
                    emitted += 1
                    if limit and emitted >= limit:
                        return

    total = sum(len(ranking_pairs(list(r))) for r in rankings.values_list("ranking", flat=True))
    return Dataset(PREFERENCE_COLUMNS, rows(), min(total, limit) if limit else total)


def _reward_pairs(project: Project, filters: dict) -> Dataset:
    """Reward-model training pairs (TRL's RewardTrainer): every two scored rollouts of a group whose rewards differ
    (by at least `margin`), the better one chosen."""
    version = _version(project, filters, "reward-model")
    queryset = _scored(project, filters, version)
    margin = filters.get("margin")

    def rows() -> Iterator[tuple]:
        for group in _groups(queryset, filters.get("limit")):
            for i, better in enumerate(group):  # best first
                for worse in group[i + 1:]:
                    gap = better[2] - worse[2]
                    if gap > 0 and (margin is None or gap >= margin):
                        yield _pair(better, worse)

    return Dataset(PAIR_COLUMNS, rows(), _count(queryset, filters))


REWARD_MODEL_COLUMNS = _cols(
    "rollout_id:int prompt completion messages:messages reward:float criterion_scores:json human_reward:float "
    "group_key task example_id"
)


def _reward_model(project: Project, filters: dict) -> Dataset:
    version = _version(project, filters, "reward-model")
    selection = _with_score(rollout_selection(project, filters), version)
    fields = ("id", "example__prompt", "prompt_messages", "completion", "messages", "group_key", "task__name",
              "example__external_id")

    def rows() -> Iterator[tuple]:
        for chunk in _id_chunks(selection, fields, limit=filters.get("limit")):
            ids = [r[0] for r in chunk]
            scores, rewards, labels = (_scores_by_rollout(ids, version.pk), _rewards(ids, version.pk),
                                       _labels_by_rollout(ids, version.pk))
            for rid, prompt, pmsgs, completion, msgs, group, task, ext in chunk:
                values = [lab["value"] for lab in labels.get(rid, []) if lab["value"] is not None]
                per_key = {s["criterion_key"]: s["score"] for s in scores.get(rid, [])}
                yield (rid, _prompt_text(prompt, pmsgs), completion, msgs, rewards.get(rid), _dumps(per_key),
                       sum(values) / len(values) if values else None, group, task, ext)

    return Dataset(REWARD_MODEL_COLUMNS, rows(), _count(selection, filters))


CALIBRATION_COLUMNS = _cols(
    "label_id:int rollout_id:int criterion_key criterion prompt completion human_value:float human_choice "
    "human_comment annotator reward_hacking:bool judge judge_score:float judge_choice judge_rationale agree:bool"
)


def _calibration(project: Project, filters: dict) -> Dataset:
    """Every human label under the version with the judge's output for the same criterion: few-shot material and
    the data judge–human agreement is computed from."""
    version = _version(project, filters, "calibration")
    titles = {c.get("key"): c.get("question") or c.get("title") or c.get("key") for c in version.criteria}
    labels = HumanLabel.objects.filter(rubric_version=version, rollout__in=rollout_selection(project, filters))
    tolerance = filters.get("agreement_tolerance", AGREEMENT_TOLERANCE)
    steps = criterion_steps(form_criteria(version))
    fields = ("id", "rollout_id", "criterion_key", "rollout__example__prompt", "rollout__prompt_messages",
              "rollout__completion", "value", "choice", "comment", "annotator__username", "reward_hacking")

    def rows() -> Iterator[tuple]:
        for chunk in _id_chunks(labels, fields, limit=filters.get("limit")):
            scores = _scores_by_rollout(sorted({r[1] for r in chunk}), version.pk)
            for lid, rid, key, prompt, pmsgs, completion, value, choice, comment, who, hacking in chunk:
                judged = [s for s in scores.get(rid, []) if s["criterion_key"] == key] or [None]
                for s in judged:
                    score = s["score"] if s else None
                    agree = None if score is None or value is None else label_gap(
                        score=score, value=value, steps=steps.get(key, 0)) < tolerance
                    yield (lid, rid, key, titles.get(key, key), _prompt_text(prompt, pmsgs), completion, value, choice,
                           comment, who, bool(hacking), s and s["judge"], score, s and s["raw_choice"],
                           s and s["rationale"], agree)

    return Dataset(CALIBRATION_COLUMNS, rows(), _count(labels, filters))


def _verifiers_rollouts(project: Project, filters: dict, version: RubricVersion, metadata: dict) -> Iterator[dict]:
    """The scored rollouts of the selection as plain dicts for the verifiers writers; once they are consumed,
    `metadata` holds the run's summary (model, counts, averages) that both layouts write beside the lines."""
    keys = [c.get("key") for c in version.criteria if c.get("key")]
    selection = _with_score(rollout_selection(project, filters), version)
    fields = ("id", "example__external_id", "prompt_messages", "messages", "completion", "example__answer",
              "task__name", "example__info", "model_name", "group_key", "error", "finish_reason", "prompt_tokens",
              "completion_tokens", "latency_ms", "created_at")
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    seen: dict[str, Any] = {"n": 0, "errors": 0, "models": set(), "examples": {}}
    for chunk in _id_chunks(selection, fields, limit=filters.get("limit")):
        ids = [r[0] for r in chunk]
        scores, rewards = _scores_by_rollout(ids, version.pk), _rewards(ids, version.pk)
        for (rid, ext, pmsgs, msgs, completion, answer, task, info, model, group, error, finish, ptok, ctok,
             latency, created) in chunk:
            prompt, turns = vf_runs.split_prompt(_json(pmsgs, []), _json(msgs, []), completion)
            per_key = {s["criterion_key"]: s["score"] for s in scores.get(rid, [])}
            reward = rewards.get(rid)
            example_key = ext if ext is not None else f"rollout-{rid}"
            index = seen["examples"].setdefault(example_key, len(seen["examples"]))
            seen["n"] += 1
            seen["errors"] += bool(error)
            seen["models"].add(model)
            sums["reward"] += reward or 0.0
            for key in keys:
                if per_key.get(key) is not None:
                    sums[key] += per_key[key]
                    counts[key] += 1
            yield {"rollout_id": rid, "external_id": ext, "index": index, "prompt": prompt, "turns": turns,
                   "completion": completion, "answer": answer or "", "task": task, "info": _json(info, {}),
                   "model": model, "group_key": group, "error": error, "finish_reason": finish,
                   "prompt_tokens": ptok, "completion_tokens": ctok, "latency_ms": latency,
                   "started": created.timestamp() if hasattr(created, "timestamp") else 0.0, "reward": reward,
                   "scores": {k: per_key.get(k) for k in keys}}
    n = max(seen["n"], 1)
    metadata.update({
        "env_id": project.slug, "model": ", ".join(sorted(m for m in seen["models"] if m)),
        "num_examples": len(seen["examples"]),
        "rollouts_per_example": max(1, round(seen["n"] / max(len(seen["examples"]), 1))),
        "num_rollouts": seen["n"], "avg_reward": sums["reward"] / n,
        "avg_metrics": {k: sums[k] / counts[k] for k in keys if counts[k]}, "avg_error": seen["errors"] / n,
        vf_runs.RUBRICON_KEY: {"reward": "rubric_total", "rubric": str(version), "criteria": keys},
    })


def _json(value: Any, empty: Any) -> Any:
    if value is None:
        return empty
    return json.loads(value) if isinstance(value, str) else value


def _verifiers(project: Project, filters: dict) -> Dataset:
    """A verifiers 0.4 run: traces.jsonl, one episode per rollout (the writer adds configs/resolved/eval.json).
    The reward is our rubric total (`rubric`, weight 1); each criterion score is a metric."""
    version = _version(project, filters, "verifiers")
    metadata: dict[str, Any] = {}
    marker = {"reward": "rubric_total", "rubric": str(version)}

    def rows() -> Iterator[tuple]:
        for r in _verifiers_rollouts(project, filters, version, metadata):
            data = vf_runs.task_data(index=r["index"], external_id=r["external_id"], task_name=r["task"],
                                     prompt=r["prompt"], answer=r["answer"], info=r["info"])
            yield (_dumps(vf_runs.episode(
                prompt=r["prompt"], turns=r["turns"], env_id=project.slug, task_data=data, group=r["group_key"],
                model=r["model"], total=r["reward"], scores=r["scores"], error=r["error"],
                finish_reason=r["finish_reason"], prompt_tokens=r["prompt_tokens"],
                completion_tokens=r["completion_tokens"], latency_ms=r["latency_ms"], started=r["started"],
                marker={**marker, "task": r["task"], "rollout_id": r["rollout_id"], "group_key": r["group_key"]})),)

    selection = _with_score(rollout_selection(project, filters), version)
    return Dataset(_cols("episode:json"), rows(), _count(selection, filters), metadata)


def _verifiers_03(project: Project, filters: dict) -> Dataset:
    """verifiers ≤ 0.3 results: results.jsonl (one rollout per line with an integer example_id, prompt and
    completion as chat messages, reward, metrics, timing, is_completed, is_truncated, and one column per criterion)
    plus metadata.json (env_id, avg_reward, avg_metrics, ...), as verifiers 0.3's `load_outputs` reads them."""
    version = _version(project, filters, "verifiers")
    keys = [c.get("key") for c in version.criteria if c.get("key")]
    columns = _cols(
        "example_id:int prompt:json completion:json answer task info:json reward:float error:json timing:json "
        "is_completed:bool is_truncated:bool stop_condition metrics:json token_usage:json"
    ) + [Column(key, FLOAT) for key in keys] + _cols("example_external_id rollout_id:int group_key")
    metadata: dict[str, Any] = {}

    def rows() -> Iterator[tuple]:
        for r in _verifiers_rollouts(project, filters, version, metadata):
            start, seconds = r["started"], (r["latency_ms"] or 0) / 1000
            timing = {"start_time": start, "setup": {"start": start, "end": start},
                      "generation": {"start": start, "end": start + seconds},
                      "scoring": {"start": start + seconds, "end": start + seconds},
                      "model": {"spans": []}, "env": {"spans": []}}
            error = {"error": "RolloutError", "message": r["error"], "error_chain_repr": repr(r["error"]),
                     "error_chain_str": r["error"]} if r["error"] else None
            usage = ({"input_tokens": r["prompt_tokens"] or 0, "output_tokens": r["completion_tokens"] or 0}
                     if r["prompt_tokens"] is not None or r["completion_tokens"] is not None else None)
            metrics = {k: v for k, v in r["scores"].items() if v is not None}
            yield (r["index"], _dumps(r["prompt"]), _dumps(r["turns"]), r["answer"], r["task"], _dumps(r["info"]),
                   r["reward"], _dumps(error), _dumps(timing), True, r["finish_reason"] == "length", None,
                   _dumps(metrics), _dumps(usage), *[r["scores"][k] for k in keys], r["external_id"],
                   r["rollout_id"], r["group_key"])

    selection = _with_score(rollout_selection(project, filters), version)
    return Dataset(columns, rows(), _count(selection, filters), metadata)


BUILDERS = {
    ExportKind.ROLLOUTS: _rollouts,
    ExportKind.SFT: _sft,
    ExportKind.PREFERENCES: _preferences,
    ExportKind.REWARD_MODEL: _reward_model,
    ExportKind.REWARD_PAIRS: _reward_pairs,
    ExportKind.CALIBRATION: _calibration,
    ExportKind.VERIFIERS: _verifiers,
    ExportKind.VERIFIERS_03: _verifiers_03,
}


def dataset_build(*, project: Project, kind: str, filters: dict) -> Dataset:
    return BUILDERS[kind](project, filters)
