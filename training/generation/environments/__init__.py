"""Environments: what the model sees, how the world answers, and the facts a rubric scores.

- `SingleTurnEnvironment` — task system prompt + example prompt through the task's Jinja2 template.
- `WordleEnvironment` — multi-turn word game with per-letter feedback (`wordle_examples()` makes examples).
- `ToolEnvironment` — OpenAI tool calls to a safe calculator and a lookup in the example's info.

Write a new one by implementing the `Environment` protocol (`tools`, `reset`, `step`); play any of them on
any backend with `run_episodes`.
"""

from __future__ import annotations

from training.generation.environments.base import (
    Environment,
    EnvironmentFactory,
    EpisodeError,
    PromptTemplateError,
    StepResult,
    Trajectory,
    TurnRecord,
    run_episodes,
)
from training.generation.environments.single_turn import PromptBuilder, SingleTurnEnvironment
from training.generation.environments.tools import BUILTIN_TOOLS, ToolEnvironment, ToolError, calculate
from training.generation.environments.wordle import (
    WordleEnvironment,
    parse_guess,
    score_guess,
    word_list,
    wordle_examples,
)

__all__ = [
    "BUILTIN_TOOLS",
    "Environment",
    "EnvironmentFactory",
    "EpisodeError",
    "PromptBuilder",
    "PromptTemplateError",
    "SingleTurnEnvironment",
    "StepResult",
    "ToolEnvironment",
    "ToolError",
    "Trajectory",
    "TurnRecord",
    "WordleEnvironment",
    "calculate",
    "parse_guess",
    "run_episodes",
    "score_guess",
    "word_list",
    "wordle_examples",
]
