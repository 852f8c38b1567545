"""Task source: procedurally generated examples from reasoning-gym, and its own scoring as a rubric criterion.

    dataset_names() -> list[str]                                   # registered reasoning-gym datasets
    generate(name, *, size, seed, config=None) -> list[GeneratedExample]
    score_answer(answer, info, *, dataset=None) -> float           # the dataset's own score_answer, 0..1

Each generated example keeps what reasoning-gym needs to score an answer later, without generating again, in its
`info` under `reasoning_gym`: the dataset name, its config (seed and size included), the index and the entry itself
(question, answer, metadata). Scoring re-creates the entry from that and calls the dataset's `score_answer`.

reasoning-gym is optional (`pip install 'rubricon[sources]'`): it is imported only when used, and its absence is a
clear `ReasoningGymUnavailable`, never an ImportError at start-up. No Django here.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

INFO_KEY = "reasoning_gym"
MAX_SIZE = 10_000
NAME_RE = re.compile(r"^[a-z0-9_]{1,64}$")
SYSTEM_PROMPT_NAME = "default"  # reasoning-gym's own system prompt: think, then <answer>...</answer>
INSTALL_HINT = "reasoning-gym is not installed on this server; install it with pip install 'rubricon[sources]'."


class ReasoningGymUnavailable(RuntimeError):
    """reasoning-gym is not installed in this process."""


class ReasoningGymError(ValueError):
    """A dataset name, size, seed or config reasoning-gym refuses; `field` names the input to fix."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GeneratedExample:
    external_id: str
    question: str
    answer: str
    info: dict[str, Any] = field(default_factory=dict)


def _module() -> Any:
    try:
        import reasoning_gym
    except ImportError as error:
        raise ReasoningGymUnavailable(INSTALL_HINT) from error
    return reasoning_gym


def available() -> bool:
    try:
        _module()
    except ReasoningGymUnavailable:
        return False
    return True


def dataset_names() -> list[str]:
    from reasoning_gym.factory import DATASETS

    _module()
    return sorted(DATASETS)


def system_prompt() -> str:
    from reasoning_gym.utils import SYSTEM_PROMPTS

    _module()
    return str(SYSTEM_PROMPTS[SYSTEM_PROMPT_NAME])


def _jsonable(value: Any) -> Any:
    """reasoning-gym metadata as JSON values (tuples become lists, sets sorted lists, numpy scalars numbers)."""

    def default(item: Any) -> Any:
        if isinstance(item, set | frozenset):
            return sorted(item, key=str)
        if hasattr(item, "item"):
            return item.item()
        if hasattr(item, "tolist"):
            return item.tolist()
        return str(item)

    return json.loads(json.dumps(value, default=default))


def _config_fields(name: str) -> set[str]:
    import dataclasses

    from reasoning_gym.factory import DATASETS

    _, config_cls = DATASETS[name]
    return {f.name for f in dataclasses.fields(config_cls)}


def generate(name: str, *, size: int, seed: int, config: dict[str, Any] | None = None) -> list[GeneratedExample]:
    """`size` entries of dataset `name` generated with `seed` (and any other config fields of the dataset)."""
    _module()
    from reasoning_gym.factory import DATASETS, create_dataset

    if not NAME_RE.match(name or "") or name not in DATASETS:
        raise ReasoningGymError(f"No reasoning-gym dataset named {name!r} (there are {len(DATASETS)}, e.g. "
                                "basic_arithmetic, chain_sum, leg_counting).", field="dataset")
    if not isinstance(size, int) or not 1 <= size <= MAX_SIZE:
        raise ReasoningGymError(f"Size must be 1..{MAX_SIZE:,}.", field="size")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ReasoningGymError("Seed must be a whole number 0..4294967295.", field="seed")
    if not isinstance(config or {}, dict):
        raise ReasoningGymError("Config must be a JSON object of the dataset's config fields.", field="config")
    extra = dict(config or {})
    unknown = sorted(set(extra) - _config_fields(name) | ({"seed", "size"} & set(extra)))
    if unknown:
        raise ReasoningGymError(f"Unknown config field(s) for {name}: {', '.join(unknown)} (seed and size have "
                                f"their own inputs); known: {', '.join(sorted(_config_fields(name) - {'seed', 'size'}))}.",
                                field="config")
    full = {**_jsonable(extra), "seed": seed, "size": size}
    try:
        dataset = create_dataset(name, **full)
        entries = [dataset[i] for i in range(size)]
    except (ValueError, TypeError, AssertionError) as error:
        raise ReasoningGymError(f"reasoning-gym refused the config of {name}: {error}", field="config") from error
    out = []
    for index, entry in enumerate(entries):
        stored = _jsonable({"question": entry["question"], "answer": entry["answer"],
                            "metadata": entry.get("metadata", {})})
        out.append(GeneratedExample(
            external_id=f"{name}-{seed}-{index}", question=str(entry["question"]),
            answer="" if entry["answer"] is None else str(entry["answer"]),
            info={INFO_KEY: {"dataset": name, "config": full, "index": index, "entry": stored}},
        ))
    return out


@functools.lru_cache(maxsize=64)
def _scorer(name: str, config_json: str) -> Any:
    from reasoning_gym.factory import DATASETS

    dataset_cls, config_cls = DATASETS[name]
    return dataset_cls(config=config_cls(**json.loads(config_json))).score_answer


def score_answer(answer: str | None, info: dict[str, Any], *, dataset: str | None = None) -> float:
    """The dataset's own `score_answer(answer, entry)` with the entry re-created from the example's stored info.

    `dataset` overrides the dataset named in the info (scoring with another dataset's rules). Raises
    ReasoningGymError when the example carries no reasoning-gym entry, ReasoningGymUnavailable without the
    package."""
    stored = (info or {}).get(INFO_KEY)
    if not isinstance(stored, dict) or not isinstance(stored.get("entry"), dict):
        raise ReasoningGymError("the example has no reasoning-gym entry (info.reasoning_gym); import the task "
                                "from reasoning-gym to use this criterion")
    name = dataset or str(stored.get("dataset") or "")
    _module()
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        raise ReasoningGymError(f"no reasoning-gym dataset named {name!r}")
    config = stored.get("config") if name == stored.get("dataset") else {}
    score_fn = _scorer(name, json.dumps(config or {}, sort_keys=True))
    entry = dict(stored["entry"])
    entry.setdefault("metadata", {})
    return float(score_fn(answer, entry))
