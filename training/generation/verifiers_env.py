"""Run a verifiers 0.4 environment (an installed taskset plugin and a harness) against an OpenAI-compatible endpoint,
with verifiers' own episode loop, and hand back the episodes as verifiers writes them (`Episode.to_record()`, one
line of `traces.jsonl`).

    plugin_allowed(taskset_id, allowed) -> bool
    taskset_tasks(taskset, count) -> list[dict]          # the first `count` tasks' data (prompt, info, ...)
    run_episodes(VerifiersRun(...)) -> list[dict]         # episode records, `rollouts` per task, in task order

Every agent seat of the env runs in verifiers' `subprocess` runtime (no container) with the harness named in the run
(default `rubricon_chat`: verifiers' plain chat program run by this interpreter, no download). No Django here; the
worker turns the records into rollouts with the verifiers run reader (webapp/exports/verifiers_runs.py).
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_HARNESS = "rubricon_chat"
# Plugins an operator allows unless told otherwise (RUBRICON_VERIFIERS_PLUGINS): game tasksets that run in-process.
DEFAULT_ALLOWED_PLUGINS: tuple[str, ...] = ("textarena", "rubricon_wordle", "rubricon_chat", "null")


class VerifiersUnavailable(RuntimeError):
    """verifiers (0.4, v1 API) is not installed in this process."""


def plugin_allowed(plugin_id: str, allowed: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(plugin_id, pattern) for pattern in allowed)


def _require() -> None:
    try:
        import verifiers.v1  # noqa: F401
    except ImportError as error:
        raise VerifiersUnavailable(
            "verifiers 0.4 is not installed on this worker; install it with pip install verifiers==0.4.0"
        ) from error


@dataclass(frozen=True)
class VerifiersRun:
    taskset: dict[str, Any]  # {"id": "textarena", "game": "Wordle-v0", ...}: the taskset config
    tasks: list[int]  # positions of the tasks in the taskset to run
    base_url: str  # OpenAI-compatible endpoint (…/v1)
    model: str
    api_key_var: str = "RUBRICON_VF_NO_KEY"  # environment variable verifiers reads the key from
    harness: dict[str, Any] = field(default_factory=lambda: {"id": DEFAULT_HARNESS})
    rollouts: int = 1  # episodes per task (a GRPO group)
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, top_p, max_tokens
    max_turns: int | None = None
    max_concurrent: int = 4
    episode_timeout_s: float | None = None


def _env_config(run: VerifiersRun) -> Any:
    from verifiers.v1.configs.agent import AgentConfig
    from verifiers.v1.utils.loaders import env_config_type

    cls = env_config_type(str(run.taskset.get("id") or ""))
    roles = [name for name, info in cls.model_fields.items() if info.annotation is AgentConfig
             or (isinstance(info.annotation, type) and issubclass(info.annotation, AgentConfig))]
    seat: dict[str, Any] = {"harness": dict(run.harness), "runtime": {"type": "subprocess"}}
    if run.max_turns is not None:
        seat["max_turns"] = run.max_turns
    data: dict[str, Any] = {"taskset": dict(run.taskset), **{role: seat for role in roles}}
    if run.episode_timeout_s is not None:
        data["timeout"] = {"episode": run.episode_timeout_s}
    return cls.model_validate(data)


def taskset_tasks(taskset: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The data of the taskset's first `count` tasks (what a Rubricon example stores to show the task)."""
    _require()
    from verifiers.v1.utils.loaders import load_taskset, taskset_config_type

    config = taskset_config_type(str(taskset.get("id") or "")).model_validate(taskset)
    out = []
    for index, task in enumerate(load_taskset(config)):
        if index >= count:
            break
        out.append(task.data.model_dump(mode="json", exclude_none=True))
    return out


async def _run(run: VerifiersRun) -> list[dict[str, Any]]:
    from verifiers.v1.clients import ModelContext
    from verifiers.v1.configs.client import EvalClientConfig
    from verifiers.v1.types import SamplingConfig
    from verifiers.v1.utils.loaders import load_environment

    env = load_environment(_env_config(run))
    wanted = sorted(set(run.tasks))
    tasks: dict[int, Any] = {}
    for index, task in enumerate(env.taskset):
        if index > (wanted[-1] if wanted else -1):
            break
        if index in wanted:
            tasks[index] = task
    missing = [i for i in wanted if i not in tasks]
    if missing:
        raise ValueError(f"the taskset has no task at position(s) {missing}")
    ctx = ModelContext(model=run.model, client=EvalClientConfig(base_url=run.base_url, api_key_var=run.api_key_var),
                       sampling=SamplingConfig(**run.sampling))
    semaphore = asyncio.Semaphore(max(1, run.max_concurrent))
    async with env.serving():
        slots = [(index, slot) for index in run.tasks for slot in env.slots(tasks[index], run.rollouts)]
        episodes = await asyncio.gather(*(env.run_slot(slot, ctx, semaphore) for _, slot in slots))
    records = []
    for (index, _), episode in zip(slots, episodes, strict=True):
        record = episode.to_record()
        record.setdefault("task", {}).setdefault("data", {})["idx"] = index
        records.append(record)
    return records


def run_episodes(run: VerifiersRun) -> list[dict[str, Any]]:
    """Run the episodes (blocking); one record per episode, grouped by task in `run.tasks` order."""
    _require()
    return asyncio.run(_run(run))
