"""Which reward functions a GRPO run scores with: functions named by import path, or one per rubric criterion built by
the rubric engine (its judge a hosted endpoint or the run's own local model).

Imports neither torch nor TRL (training.grpo.runner does), so loading and naming reward functions does not pay for the
trainer's imports (several seconds of CPU).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from training.grpo.config import GRPORunConfig, LocalJudge, RewardRef
from training.models import resolve_model

logger = logging.getLogger(__name__)

RewardFunction = Callable[
    ..., Any
]  # TRL reward function: (prompts, completions, **kwargs) -> list[float | None]

DEFAULT_MODELS_DIR = Path("var/models")


def reward_name(func: RewardFunction) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def load_reward_refs(refs: Sequence[RewardRef]) -> tuple[list[RewardFunction], list[float]]:
    """Import reward functions named 'module:function' (calling it with kwargs when given, as a factory)."""
    funcs, weights = [], []
    for ref in refs:
        module_name, _, attr = ref.function.partition(":")
        if not module_name or not attr:
            raise ValueError(f"reward function {ref.function!r} must look like 'package.module:function'.")
        target = getattr(importlib.import_module(module_name), attr)
        funcs.append(target(**ref.kwargs) if ref.kwargs else target)
        weights.append(ref.weight)
    return funcs, weights


def rewards_from_config(
    config: GRPORunConfig,
    *,
    models_dir: str | Path = DEFAULT_MODELS_DIR,
    resources: contextlib.ExitStack | None = None,
    log_dir: Path | None = None,
) -> tuple[list[RewardFunction], list[float]]:
    """Reward functions for a run launched from JSON: `config.rewards` by import path, else the rubric spec.

    The rubric route builds one function per criterion with the rubric engine (judge criteria call
    `config.judge`, or the local judge model of `config.local_judge`), so the per-criterion metrics carry the
    criterion keys. A local vLLM judge is a server started here and closed with `resources` (required then).
    """
    if config.rewards:
        return load_reward_refs(config.rewards)
    if config.rubric is None:
        raise ValueError(
            "The config has neither `rewards` nor a `rubric`: give one of them so the run has a reward."
        )
    from training.rubrics.rewards import build_reward_functions
    from training.rubrics.spec import validate_spec

    spec = validate_spec(config.rubric, python_allowlist=config.python_allowlist)
    judge = None
    if config.judge is not None:
        import os

        from training.judges.openai_judge import OpenAIJudge
        from training.llm_client import OpenAICompatibleClient
        from training.outbound import hosts_from_environ, key_var_check, key_var_patterns_from_environ

        # The config names the variable; the key itself never travels in a stored config. The operator's rules are
        # checked again here: a config written before they existed must not send a secret anywhere either.
        key_env = config.judge.api_key_env
        if key_env:
            key_var_check(key_env, allowed=key_var_patterns_from_environ(os.environ))
        client = OpenAICompatibleClient(
            base_url=config.judge.base_url,
            model=config.judge.model,
            api_key=os.environ.get(key_env) if key_env else None,
            max_concurrency=config.judge.max_concurrency,
            timeout_s=config.judge.timeout_s,
            allowed_hosts=hosts_from_environ(os.environ),
        )
        judge = OpenAIJudge(client)
    elif config.local_judge is not None:
        judge = _local_judge(config.local_judge, models_dir=Path(models_dir), resources=resources, log_dir=log_dir)
    rewards = build_reward_functions(spec, judge=judge, python_allowlist=config.python_allowlist)
    return list(rewards.funcs), list(rewards.weights)


def _local_judge(
    local: LocalJudge, *, models_dir: Path, resources: contextlib.ExitStack | None, log_dir: Path | None
) -> Any:
    """The run's own judge model: in-process with transformers, or vLLM's OpenAI server started for the run.

    Both ask with the same parameters as the judge jobs of the same endpoint (webapp.judging.judges), so a rubric
    scores a completion the same way while training and afterwards."""
    model_path = resolve_model(local.model, models_dir=models_dir)
    if local.engine == "transformers":
        from training.judges.transformers_judge import TransformersJudge

        return TransformersJudge(model_path, max_new_tokens=local.max_new_tokens, temperature=local.temperature)
    if resources is None:
        raise ValueError("a local vLLM judge runs as a server: pass `resources` (an ExitStack) to stop it after the run")
    from training.judges.openai_judge import OpenAIJudge
    from training.llm_client import OpenAICompatibleClient
    from training.vllm_server import VllmServer

    logger.info("starting the vLLM judge server for %s", model_path)
    server = resources.enter_context(VllmServer(
        model_path, model_name="judge", enforce_eager=local.enforce_eager, start_timeout_s=local.start_timeout_s,
        log_path=log_dir / "judge-server.log" if log_dir is not None else None,
    ))
    logger.info("vLLM judge server answers at %s", server.base_url)
    client = OpenAICompatibleClient(base_url=server.base_url, model=server.model_name, max_concurrency=8,
                                    allowed_hosts=("127.0.0.1",))
    return OpenAIJudge(client, temperature=local.temperature, max_tokens=local.max_new_tokens)
