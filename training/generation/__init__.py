"""Rollout generation: backends (vLLM offline, OpenAI-compatible HTTP, transformers) and environments.

Public API (all importable from `training.generation`; none of it imports torch, vLLM or Django until a
backend is used):

    from training.generation import (
        BackendConfig, create_backend, SamplingParams, Example, run_episodes,
        SingleTurnEnvironment, WordleEnvironment, ToolEnvironment,
    )

    backend = create_backend(BackendConfig(kind="vllm", model="/models/x", enforce_eager=True))
    make_env = functools.partial(SingleTurnEnvironment, system_prompt=task.system_prompt,
                                 prompt_template=task.prompt_template)
    trajectories = run_episodes(backend, make_env, examples, SamplingParams(n=8, max_tokens=256, seed=0))
    backend.close()

- `backend.generate(conversations, params, tools=None) -> list[list[Completion]]` is the raw call: one
  list of `params.n` completions per conversation.
- `run_episodes(...) -> list[Trajectory]` plays environments; trajectory `k` of an example is its
  `sample_index` k, and `Trajectory.to_dict()` is what a `Rollout` row stores (messages with tool calls,
  per-turn metadata, token counts, finish reason, latency, error, environment info).
- Errors: `GenerationError` (raised: the backend cannot work at all, e.g. unknown model path),
  `PromptTemplateError` (raised at environment construction for a template that does not compile).
  Everything per item (context overflow, endpoint failures, a template failing for one example, an
  environment exception) is returned as data on the `Completion` / `Trajectory` (`error`, `error_kind`).
"""

from __future__ import annotations

from training.generation.backends.base import BackendConfig, BackendKind, GenerationBackend, create_backend
from training.generation.environments import (
    Environment,
    EpisodeError,
    PromptTemplateError,
    SingleTurnEnvironment,
    StepResult,
    ToolEnvironment,
    Trajectory,
    TurnRecord,
    WordleEnvironment,
    run_episodes,
    wordle_examples,
)
from training.generation.types import (
    Completion,
    Conversation,
    ErrorKind,
    Example,
    FinishReason,
    GenerationError,
    Message,
    SamplingParams,
)

__all__ = [
    "BackendConfig",
    "BackendKind",
    "Completion",
    "Conversation",
    "Environment",
    "EpisodeError",
    "ErrorKind",
    "Example",
    "FinishReason",
    "GenerationBackend",
    "GenerationError",
    "Message",
    "PromptTemplateError",
    "SamplingParams",
    "SingleTurnEnvironment",
    "StepResult",
    "ToolEnvironment",
    "Trajectory",
    "TurnRecord",
    "WordleEnvironment",
    "create_backend",
    "run_episodes",
    "wordle_examples",
]
