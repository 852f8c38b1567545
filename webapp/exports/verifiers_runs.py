"""verifiers run files, read and written without importing verifiers (the web process does not install it).

Two layouts exist:

- verifiers 0.4 (`vf-eval` of the v1 API): a run folder with `traces.jsonl` (one episode per line: the task, and
  one trace per agent with its message graph, model calls, named weighted rewards and metrics) and the resolved
  config `configs/resolved/eval.json`. verifiers reads it back with `verifiers.v1.utils.trace_store.read_episodes`.
- verifiers ≤ 0.3: `results.jsonl` (one rollout per line: integer `example_id`, prompt and completion messages,
  `reward`, `metrics`, `timing`, ...) next to `metadata.json` (`env_id`, `model`, `avg_reward`, `avg_metrics`, ...),
  as `verifiers.legacy.utils.save_utils.load_outputs` (0.3.1) reads it.

Readers turn a line into `RunRollout`s, a layout-neutral record, or raise `LineError` naming what is wrong; writers
turn our rows into lines the matching verifiers reader accepts. Tool calls are OpenAI-shaped on our side
(`{"id", "type", "function": {"name", "arguments"}}`) and flat on verifiers 0.4's (`{"id", "type", "name",
"arguments"}`).
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

TRACES_FILE = "traces.jsonl"
CONFIG_FILE = "configs/resolved/eval.json"
RESULTS_FILE = "results.jsonl"
METADATA_FILE = "metadata.json"
V04, V03 = "0.4", "0.3"
# verifiers 0.4 TaskData fields; anything else in `task.data` is the taskset's own (answer, info, ...).
TASK_DATA_FIELDS = {
    "idx", "id", "name", "description", "prompt", "system_prompt", "image", "workdir", "agent_user", "skills",
    "network_allow", "network_block", "artifacts", "artifact_max_bytes", "timeout", "resources",
}
# Stop conditions verifiers 0.4 counts as truncation (`Trace.is_truncated`).
TRUNCATING_STOPS = {"max_turns", "max_input_tokens", "max_output_tokens", "max_total_tokens", "compaction_failed"}
# Columns of a ≤ 0.3 results row that are not metrics (old and new layouts).
V03_FIELDS = {
    "id", "example_id", "prompt", "completion", "answer", "task", "info", "reward", "error", "timing",
    "is_completed", "is_truncated", "stop_condition", "metrics", "tool_defs", "token_usage", "generation_ms",
    "scoring_ms", "total_ms", "error_chain", "long_error_chain", "rollout_id", "group_key", "oai_tools", "state",
    "trajectory", "example_external_id",
}
# Marks a file Rubricon wrote: its reward is a Rubricon rubric total, not a score of the environment's own.
RUBRICON_KEY = "rubricon"


class LineError(ValueError):
    """A line that is not what the layout says; the message names the field."""


@dataclass
class RunRollout:
    """One rollout of a verifiers run, whichever layout it came from."""

    task_name: str  # the row's task (≤ 0.3 'task' column, 0.4 env id): finds our task when none is chosen
    task_id: str | None  # the taskset's durable task id (0.4 task.data.id) or the id Rubricon exported
    index: int | None  # the task's position in the taskset / dataset (0.4 idx, ≤ 0.3 example_id)
    prompt_text: str  # the user prompt, to find an example by its prompt
    prompt: list[dict]  # messages before the first model turn
    completion: list[dict]  # the model's turns and what answered them
    answer: str
    info: dict
    group: str  # rollouts of one task in one run: a GRPO group
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: int | None
    finish_reason: str
    error: str
    reward: float | None  # the run's reward: sum of score × weight over `rewards`
    rewards: dict[str, dict[str, float] | None]  # name -> {score, weight}; None = not scored
    metrics: dict[str, float | None]
    extra: dict[str, Any] = field(default_factory=dict)  # timing, stop condition, trace and episode ids, ...
    rubricon: dict[str, Any] = field(default_factory=dict)  # what Rubricon wrote about the row, when it did


# --- small checks ------------------------------------------------------------------------------------------------


def _number(value: Any, name: str, *, optional: bool = True) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LineError(f"{name} must be a number, not {value!r}.")
    return float(value)


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return min(round(value), 2**31 - 1)


def _object(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise LineError(f"{name} must be an object.")
    return value


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: list[dict]) -> str:
    users = [content_text(m.get("content")) for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def last_assistant_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "assistant":
            return content_text(message.get("content"))
    return ""


def sniff(record: Any) -> str | None:
    """Which layout a first line belongs to, or None when it is neither."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("traces"), list) and isinstance(record.get("task"), dict):
        return V04
    if "prompt" in record and "completion" in record:
        return V03
    return None


NOT_A_RUN = ("not a verifiers run: a verifiers 0.4 traces.jsonl line is an episode with 'task' and 'traces', a "
             "≤ 0.3 results.jsonl line a rollout with 'prompt' and 'completion'.")


# --- messages ----------------------------------------------------------------------------------------------------


def message_from_verifiers(message: Any, where: str) -> dict:
    """A verifiers 0.4 message as an OpenAI chat message (tool calls nested under `function`)."""
    if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
        raise LineError(f"{where} is not a chat message (an object with role system, user, assistant or tool).")
    out = {k: v for k, v in message.items() if k != "tool_calls" and v is not None}
    out.setdefault("content", "" if message["role"] != "assistant" else None)
    calls = message.get("tool_calls")
    if calls:
        if not isinstance(calls, list):
            raise LineError(f"{where}: tool_calls must be a list.")
        out["tool_calls"] = []
        for call in calls:
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise LineError(f"{where}: a tool call needs a name.")
            out["tool_calls"].append({
                "id": str(call.get("id") or ""), "type": call.get("type") or "function",
                "function": {"name": call["name"], "arguments": str(call.get("arguments") or "")},
                **({"namespace": call["namespace"]} if call.get("namespace") else {}),
            })
    return out


def message_to_verifiers(message: dict) -> dict:
    """An OpenAI chat message in verifiers 0.4's shape (its Message union validates it)."""
    role = message.get("role")
    content = message.get("content")
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant", "content": content if isinstance(content, str) else (
            content_text(content) or None)}
        if message.get("reasoning_content"):
            out["reasoning_content"] = message["reasoning_content"]
        calls = message.get("tool_calls") or []
        if calls:
            out["tool_calls"] = [{
                "id": str(call.get("id") or f"call_{i}"), "type": "function",
                "name": str((call.get("function") or {}).get("name", call.get("name", ""))),
                "arguments": _arguments((call.get("function") or {}).get("arguments", call.get("arguments", ""))),
            } for i, call in enumerate(calls)]
        return out
    if role == "tool":
        out = {"role": "tool", "tool_call_id": str(message.get("tool_call_id") or ""),
               "content": content if isinstance(content, str) else content_text(content)}
        if message.get("name"):
            out["name"] = message["name"]
        return out
    return {"role": role if role in ("system", "user") else "user",
            "content": content if isinstance(content, str) else content_text(content)}


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- verifiers 0.4: traces.jsonl -----------------------------------------------------------------------------------


def _branch(nodes: list) -> list[int]:
    """The node indices of the last root-to-leaf path of a trace's message graph (verifiers' `Trace.messages`)."""
    has_child = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise LineError(f"node {i} must be an object.")
        parent = node.get("parent")
        if parent is not None:
            if isinstance(parent, bool) or not isinstance(parent, int) or not 0 <= parent < len(nodes) or parent == i:
                raise LineError(f"node {i} has parent {parent!r}, which is not a node of the trace.")
            has_child.add(parent)
    leaves = [i for i in range(len(nodes)) if i not in has_child]
    if not leaves:
        return []
    path, current, seen = [], leaves[-1], set()
    while current is not None:
        if current in seen:
            raise LineError("the trace's message graph has a cycle.")
        seen.add(current)
        path.append(current)
        current = nodes[current].get("parent")
    path.reverse()
    return path


def _task_prompt(data: dict) -> tuple[list[dict], str]:
    prompt = data.get("prompt")
    messages: list[dict] = []
    if isinstance(data.get("system_prompt"), str) and data["system_prompt"]:
        messages.append({"role": "system", "content": data["system_prompt"]})
    if isinstance(prompt, str):
        messages.append({"role": "user", "content": prompt})
        return messages, prompt
    if isinstance(prompt, list):
        messages += [message_from_verifiers(m, f"task prompt message {i}") for i, m in enumerate(prompt)]
    return messages, last_user_text(messages)


def _rewards(raw: Any) -> tuple[dict[str, dict[str, float] | None], float | None]:
    rewards: dict[str, dict[str, float] | None] = {}
    total, scored = 0.0, False
    for name, reward in _object(raw, "rewards").items():
        if reward is None:
            rewards[name] = None
            continue
        if not isinstance(reward, dict):
            raise LineError(f"reward {name!r} must be an object with score and weight.")
        score = _number(reward.get("score"), f"reward {name!r} score", optional=False)
        weight = _number(reward.get("weight", 1.0), f"reward {name!r} weight", optional=False)
        rewards[name] = {"score": score, "weight": weight}
        total += score * weight  # type: ignore[operator]
        scored = True
    return rewards, total if scored else None


def _metrics(raw: Any) -> dict[str, float | None]:
    return {name: _number(value, f"metric {name!r}") for name, value in _object(raw, "metrics").items()}


def _errors(raw: Any) -> str:
    if not isinstance(raw, list) or not raw:
        return ""
    last = raw[-1]
    if isinstance(last, dict):
        return ": ".join(str(last[k]) for k in ("type", "message") if last.get(k))
    return str(last)


def read_episode(record: Any, config: dict) -> list[RunRollout]:
    """The rollouts of one traces.jsonl line (one per trace; an episode that failed before any agent ran is one
    rollout with its error)."""
    if sniff(record) != V04:
        raise LineError(NOT_A_RUN)
    task = record["task"]
    data = _object(task.get("data"), "task.data")
    prompt_messages, prompt_text = _task_prompt(data)
    env = _object(record.get("env"), "env")
    env_id = str(env.get("id") or config.get("env_id") or "")
    extras = {k: v for k, v in data.items() if k not in TASK_DATA_FIELDS}
    info = extras.pop("info") if isinstance(extras.get("info"), dict) else {}
    answer = extras.pop("answer") if isinstance(extras.get("answer"), str) else ""
    info = {**extras, **info}
    rubricon = info.pop(RUBRICON_KEY, None) or {}
    group = _object(record.get("group"), "group").get("id") or task.get("key") or task.get("hash") or data.get(
        "id") or data.get("idx")
    traces = record["traces"]
    base = {
        "task_name": env_id, "task_id": str(data["id"]) if data.get("id") not in (None, "") else None,
        "index": data["idx"] if isinstance(data.get("idx"), int) and not isinstance(data.get("idx"), bool) else None,
        "answer": answer, "info": info, "group": str(group) if group is not None else "",
        "rubricon": rubricon if isinstance(rubricon, dict) else {},
    }
    if not traces:
        return [RunRollout(
            **base, prompt_text=prompt_text, prompt=prompt_messages, completion=[], model=str(config.get("model") or ""),
            prompt_tokens=None, completion_tokens=None, latency_ms=None, finish_reason="",
            error=_errors(record.get("errors")) or "the episode ended before any agent ran", reward=None, rewards={},
            metrics={}, extra={"episode_id": record.get("id"), "env": env_id},
        )]
    out = []
    for t, trace in enumerate(traces):
        where = f"trace {t}"
        if not isinstance(trace, dict):
            raise LineError(f"{where} must be an object.")
        nodes = trace.get("nodes") or []
        if not isinstance(nodes, list):
            raise LineError(f"{where}: nodes must be a list.")
        try:
            indices = _branch(nodes)
            path = [nodes[i] for i in indices]
            messages = [message_from_verifiers(nodes[i].get("message"), f"node {i} message") for i in indices]
        except LineError as error:
            raise LineError(f"{where}: {error}") from None
        first_sampled = next((i for i, node in enumerate(path) if node.get("sampled")), None)
        if first_sampled is None:  # no model turn: the prompt is what came before the first assistant message
            first_sampled = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
        prompt, completion = messages[:first_sampled], messages[first_sampled:]
        if not messages:
            prompt = prompt_messages
        calls = [c for c in trace.get("calls") or [] if isinstance(c, dict)]
        agent = _object(trace.get("agent"), f"{where} agent")
        agent_config = _object(agent.get("config"), f"{where} agent.config")
        model = agent_config.get("model") or next((c.get("model") for c in reversed(calls) if c.get("model")), None)
        model = str(model or config.get("model") or "")
        try:
            rewards, reward = _rewards(trace.get("rewards"))
            metrics = _metrics(trace.get("metrics"))
        except LineError as error:
            raise LineError(f"{where}: {error}") from None
        usage = [c["usage"] for c in calls if isinstance(c.get("usage"), dict)]
        prompt_tokens = _count(trace.get("num_input_tokens"))
        completion_tokens = _count(trace.get("num_output_tokens"))
        if prompt_tokens is None and usage:
            prompt_tokens = _count(sum(u.get("prompt_tokens") or 0 for u in usage))
        if completion_tokens is None and usage:
            completion_tokens = _count(sum(u.get("completion_tokens") or 0 for u in usage))
        timing = trace.get("timing") if isinstance(trace.get("timing"), dict) else {}
        latency = _latency(timing, calls)
        stop = trace.get("stop_condition")
        last_call = next((c for c in reversed(calls) if not c.get("error")), None)
        finish = "length" if stop in TRUNCATING_STOPS else str((last_call or {}).get("finish_reason") or "")
        trace_info = trace.get("info") if isinstance(trace.get("info"), dict) else {}
        marker = trace_info.get(RUBRICON_KEY)
        tools = trace.get("tools") or (path[0].get("tools") if path else None) or []
        marker = marker if isinstance(marker, dict) else base["rubricon"]
        out.append(RunRollout(
            **{**base, "rubricon": marker, "task_name": str(marker.get("task") or env_id)},
            prompt_text=last_user_text(prompt) or prompt_text, prompt=prompt, completion=completion, model=model[:300],
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, latency_ms=latency,
            finish_reason=finish[:32], error=_errors(trace.get("errors")) or _errors(record.get("errors")),
            reward=reward, rewards=rewards, metrics=metrics,
            extra={k: v for k, v in {
                "episode_id": record.get("id"), "trace_id": trace.get("id"), "env": env_id, "agent": agent.get("name"),
                "stop_condition": stop, "is_completed": trace.get("is_completed"), "ok": trace.get("ok"),
                "is_truncated": finish == "length", "timing": timing or None, "tool_defs": tools or None,
                "sampling": agent_config.get("sampling") or config.get("sampling") or None,
                "verifiers_version": _object(trace.get("verifiers"), "verifiers").get("version"),
                "task_key": task.get("key"), "task_type": task.get("type"),
                "info": {k: v for k, v in trace_info.items() if k != RUBRICON_KEY} or None,
            }.items() if v is not None},
        ))
    return out


def _latency(timing: dict, calls: list[dict]) -> int | None:
    agent = timing.get("agent") if isinstance(timing.get("agent"), dict) else {}
    start, end = agent.get("start"), agent.get("end")
    if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start > 0:
        return _count((end - start) * 1000)
    spans = [c.get("time") for c in calls if isinstance(c.get("time"), dict)]
    seconds = sum(max(0.0, (s.get("end") or 0) - (s.get("start") or 0)) for s in spans
                  if isinstance(s.get("end"), (int, float)) and isinstance(s.get("start"), (int, float)))
    return _count(seconds * 1000) if spans else None


def read_config(raw: Any) -> dict:
    """What an import keeps from configs/resolved/eval.json: env id, model, sampling, rollouts per task."""
    if not isinstance(raw, dict):
        raise LineError("configs/resolved/eval.json must hold a JSON object (verifiers' resolved EvalConfig).")
    env = raw.get("env") if isinstance(raw.get("env"), dict) else {}
    taskset = env.get("taskset") if isinstance(env.get("taskset"), dict) else {}
    return {k: v for k, v in {
        "env_id": env.get("id") or taskset.get("id") or taskset.get("name"), "model": raw.get("model"),
        "sampling": {k: v for k, v in (raw.get("sampling") or {}).items() if v is not None}
        if isinstance(raw.get("sampling"), dict) else None,
        "num_rollouts": raw.get("num_rollouts"), "run": (raw.get("run") or {}).get("name")
        if isinstance(raw.get("run"), dict) else None,
        RUBRICON_KEY: raw.get(RUBRICON_KEY) if isinstance(raw.get(RUBRICON_KEY), dict) else None,
    }.items() if v not in (None, "", {})}


# --- verifiers ≤ 0.3: results.jsonl --------------------------------------------------------------------------------


def _messages(value: Any, role: str, name: str) -> list[dict]:
    if value is None:
        return []
    if isinstance(value, str):  # completion-format environments: plain text
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not all(isinstance(m, dict) and "role" in m for m in value):
        raise LineError(f"{name} must be a list of chat messages (objects with a role) or text.")
    return value


def read_result(record: Any, metadata: dict) -> RunRollout:
    """One results.jsonl row of verifiers ≤ 0.3 (the first layouts too: `id`, top-level `*_ms` timings)."""
    if sniff(record) != V03:
        raise LineError(NOT_A_RUN)
    raw_id = record.get("example_id", record.get("id"))
    if raw_id is None or raw_id == "" or isinstance(raw_id, (dict, list, bool)):
        raise LineError("example_id is missing (vf-eval writes one per row).")
    prompt = _messages(record.get("prompt"), "user", "prompt")
    completion = _messages(record.get("completion"), "assistant", "completion")
    info = _object(record.get("info"), "info")
    metrics = dict(_object(record.get("metrics"), "metrics"))
    for name, value in record.items():
        if name not in V03_FIELDS and (isinstance(value, (int, float)) and not isinstance(value, bool) or value is None):
            metrics.setdefault(name, value)
    metrics = {name: _number(value, f"metric {name!r}") for name, value in metrics.items()}
    usage = record.get("token_usage") if isinstance(record.get("token_usage"), dict) else {}
    timing = record.get("timing") if isinstance(record.get("timing"), dict) else {}
    latency = timing.get("total_ms", record.get("total_ms"))
    if latency is None and isinstance(timing.get("generation"), dict):  # 0.3.1: spans in epoch seconds
        span = timing["generation"]
        if isinstance(span.get("end"), (int, float)) and isinstance(span.get("start"), (int, float)):
            latency = (span["end"] - span["start"]) * 1000
    reward = _number(record.get("reward"), "reward")
    task = record.get("task")
    return RunRollout(
        task_name=task if isinstance(task, str) else "",
        # Rubricon's exports name the example they came from; vf-eval's example_id is a dataset index.
        task_id=str(record["example_external_id"]) if record.get("example_external_id") not in (None, "") else (
            str(raw_id) if not isinstance(raw_id, int) else None),
        index=raw_id if isinstance(raw_id, int) else None, prompt_text=last_user_text(prompt), prompt=prompt,
        completion=completion, answer=record.get("answer") if isinstance(record.get("answer"), str) else "",
        info=info, group=str(record.get("group_key") or ""), model=str(metadata.get("model") or "")[:300],
        prompt_tokens=_count(usage.get("input_tokens")), completion_tokens=_count(usage.get("output_tokens")),
        latency_ms=_count(latency), finish_reason="length" if record.get("is_truncated") else "",
        error=_error_text(record.get("error")), reward=reward, rewards={}, metrics=metrics,
        extra={"example_id": raw_id, "env": str(metadata.get("env_id") or metadata.get("env") or ""),
               **{k: record[k] for k in ("timing", "is_completed", "is_truncated", "stop_condition", "tool_defs",
                                         "token_usage") if record.get(k) is not None},
               **{k: metadata[k] for k in ("sampling_args", "env_args") if metadata.get(k)}},
        rubricon={**metadata[RUBRICON_KEY], "group_key": record.get("group_key")}
        if isinstance(metadata.get(RUBRICON_KEY), dict) else {},
    )


def _error_text(error: Any) -> str:
    if error in (None, ""):
        return ""
    if isinstance(error, dict):
        return str(error.get("error_chain_str") or error.get("message") or error.get("error") or json.dumps(error))
    return str(error)


# --- writing -----------------------------------------------------------------------------------------------------


def split_prompt(prompt_messages: list[dict], messages: list[dict], completion: str) -> tuple[list[dict], list[dict]]:
    """(prompt, the turns after it) of a stored rollout."""
    if messages[: len(prompt_messages)] == prompt_messages and len(messages) > len(prompt_messages):
        return prompt_messages, messages[len(prompt_messages):]
    return prompt_messages, [{"role": "assistant", "content": completion}]


def episode(*, prompt: list[dict], turns: list[dict], env_id: str, task_data: dict, group: str, model: str,
            total: float | None, scores: dict[str, float | None], error: str, finish_reason: str,
            prompt_tokens: int | None, completion_tokens: int | None, latency_ms: int | None, started: float,
            marker: dict) -> dict:
    """A traces.jsonl line (verifiers 0.4 Episode) for one of our rollouts: its messages as a chain of nodes, one
    model call for the last model turn, our rubric total as the reward `rubric` (weight 1) and each criterion
    score as a metric."""
    messages = [message_to_verifiers(m) for m in [*prompt, *turns]]
    first_turn = len(prompt)
    nodes = [{"parent": i - 1 if i else None, "message": m, "sampled": i >= first_turn and m["role"] == "assistant",
              "timestamp": started} for i, m in enumerate(messages)]
    for node in nodes:
        if node["parent"] is None:
            del node["parent"]
    sampled = [i for i, n in enumerate(nodes) if n["sampled"]]
    seconds = (latency_ms or 0) / 1000
    call: dict[str, Any] = {"node": sampled[-1] if sampled else None, "model": model or None,
                            "finish_reason": finish_reason if finish_reason in ("stop", "length", "tool_calls")
                            else None, "time": {"start": started, "end": started + seconds}}
    if prompt_tokens is not None or completion_tokens is not None:
        call["usage"] = {"prompt_tokens": prompt_tokens or 0, "completion_tokens": completion_tokens or 0}
    task = {"type": "Task", "data": task_data, "key": str(task_data.get("id") or group)}
    errors = [{"type": "RolloutError", "message": error}] if error else []
    trace = {
        "version": 1, "id": uuid.uuid4().hex, "verifiers": {"version": "0.4.0"}, "task": task,
        "agent": {"config": {"model": model or None}, "name": "agent"}, "nodes": nodes,
        "calls": [{k: v for k, v in call.items() if v is not None}] if sampled else [],
        "rewards": {"rubric": {"score": total, "weight": 1.0}} if total is not None else {},
        "metrics": {k: v for k, v in scores.items() if v is not None}, "info": {RUBRICON_KEY: marker},
        "is_completed": True, "ok": not error, "stop_condition": "max_output_tokens" if finish_reason == "length"
        else None, "errors": errors,
        "timing": {"start": started, "agent": {"start": started, "end": started + seconds}},
    }
    trace = {k: v for k, v in trace.items() if v is not None}
    return {"id": uuid.uuid4().hex, "env": {"id": env_id}, "task": task, "group": {"id": group}, "ok": not error,
            "errors": errors, "traces": [trace]}


def task_data(*, index: int, external_id: str | None, task_name: str, prompt: list[dict], answer: str,
              info: dict) -> dict:
    """verifiers 0.4 TaskData for one of our examples: the prompt (text when it is one user turn, else messages),
    its system prompt, and answer and info as the taskset's own fields."""
    system = [m for m in prompt if m.get("role") == "system"]
    rest = [m for m in prompt if m.get("role") != "system"]
    data: dict[str, Any] = {"idx": index, "id": external_id, "name": task_name or None}
    if len(system) == 1 and isinstance(system[0].get("content"), str) and prompt[0] is system[0]:
        data["system_prompt"] = system[0]["content"]
        prompt = rest
    if len(prompt) == 1 and prompt[0].get("role") == "user" and isinstance(prompt[0].get("content"), str):
        data["prompt"] = prompt[0]["content"]
    elif prompt:
        data["prompt"] = [message_to_verifiers(m) for m in prompt]
    data["answer"] = answer or ""
    data["info"] = info or {}
    return {k: v for k, v in data.items() if v is not None}
