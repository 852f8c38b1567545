"""The environment protocol and the runner that plays episodes of any environment on any backend.

An environment is a loop: `reset(example)` gives the opening messages, the model answers, `step(message)`
gives the environment's reply, and so on until `done`. One environment object plays one episode.

The runner (`run_episodes`) plays `n` episodes per example (the GRPO group) and batches each turn of all
unfinished episodes into as few backend calls as possible; episodes whose conversations are identical
(every group's first turn) become one request with `n = group size`, which vLLM samples together.

    from training.generation import SamplingParams, Example, run_episodes
    from training.generation.environments import WordleEnvironment

    trajectories = run_episodes(backend, WordleEnvironment, examples, SamplingParams(n=4, max_tokens=64))
    for t in trajectories:   # example order, then sample_index
        t.messages, t.info["solved"], t.error

A failed turn (backend error, environment exception, template error) ends only its own episode; the
trajectory keeps every message up to the failure and carries the error.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

from training.generation.backends.base import GenerationBackend
from training.generation.types import (
    Completion,
    Conversation,
    ErrorKind,
    Example,
    FinishReason,
    Message,
    SamplingParams,
)


class StepResult(NamedTuple):
    """The environment's answer to one assistant message."""

    messages: list[Message]  # appended to the conversation (user feedback, tool results); may be empty
    done: bool
    info: dict[str, Any]  # facts for the rubric; the last step's info becomes `Trajectory.info`


class EpisodeError(Exception):
    """Raised by an environment for an example it cannot play (e.g. a Wordle secret that is not a word).

    The runner turns it into a failed trajectory; it never stops the other episodes.
    """


class PromptTemplateError(EpisodeError):
    """A task's prompt template does not compile or does not render for an example; the message says why."""


@runtime_checkable
class Environment(Protocol):
    # OpenAI function schemas offered to the model on every turn, or None.
    tools: list[dict[str, Any]] | None

    def reset(self, example: Example) -> Conversation:
        """Start an episode; return the opening messages (system prompt, first user turn)."""
        ...

    def step(self, message: Message) -> StepResult:
        """React to the model's assistant message (OpenAI format, maybe with `tool_calls`)."""
        ...


EnvironmentFactory = Callable[[], Environment]


@dataclass
class TurnRecord:
    """What one model turn cost and how it ended (one per assistant message)."""

    index: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    latency_ms: float
    error: str | None = None
    error_kind: ErrorKind | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the environment's info after this turn
    logprobs: list[float] | None = None


@dataclass
class Trajectory:
    """One rollout: everything the app stores and the rubric scores.

    `messages` is the full conversation in OpenAI format, opening messages first; `prompt_message_count`
    says how many of them were the prompt. Token counts: `prompt_tokens` is the first turn's prompt,
    `completion_tokens` the sum over turns. `finish_reason` is the last turn's ("error" on failure).
    """

    example_id: Any
    sample_index: int
    messages: list[Message]
    prompt_message_count: int
    turns: list[TurnRecord] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    truncated: bool = False  # the runner's max_turns stopped an episode the environment had not finished
    error: str | None = None
    error_kind: ErrorKind | None = None

    @property
    def prompt(self) -> list[Message]:
        return self.messages[: self.prompt_message_count]

    @property
    def completion_messages(self) -> list[Message]:
        return self.messages[self.prompt_message_count :]

    @property
    def completion(self) -> str:
        """Text of the last assistant message ("" when the model never answered)."""
        for message in reversed(self.messages):
            if message.get("role") == "assistant":
                return message.get("content") or ""
        return ""

    @property
    def prompt_tokens(self) -> int:
        return self.turns[0].prompt_tokens if self.turns else 0

    @property
    def completion_tokens(self) -> int:
        return sum(turn.completion_tokens for turn in self.turns)

    @property
    def latency_ms(self) -> float:
        return sum(turn.latency_ms for turn in self.turns)

    @property
    def finish_reason(self) -> FinishReason:
        if self.error is not None:
            return "error"
        return self.turns[-1].finish_reason if self.turns else "error"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form including the derived totals (what a `Rollout` row stores)."""
        data = asdict(self)
        data.update(
            completion=self.completion,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            latency_ms=self.latency_ms,
            finish_reason=self.finish_reason,
        )
        return data


@dataclass
class _Episode:
    trajectory: Trajectory
    env: Environment
    active: bool = True


def run_episodes(
    backend: GenerationBackend,
    make_env: EnvironmentFactory,
    examples: Sequence[Example],
    params: SamplingParams,
    *,
    max_turns: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Trajectory]:
    """Play `params.n` episodes of each example; return trajectories in example order, then sample index.

    `make_env` builds a fresh environment per episode (a class or `functools.partial` of one).
    `params.max_tokens` applies per turn. `max_turns` bounds episodes whose environment never ends.
    `on_progress(ended, failed)` is told as episodes end (rollouts done, of which failed); for environments that
    end after one turn (`single_turn = True`) it is told inside the backend call, as each completion arrives.
    Counts only, cheap: it runs in the backend's loop.
    """
    report = on_progress or _no_progress
    episodes: list[_Episode] = []
    for example in examples:
        for sample_index in range(params.n):
            env = make_env()
            trajectory = Trajectory(example.id, sample_index, messages=[], prompt_message_count=0)
            episode = _Episode(trajectory, env)
            try:
                opening = env.reset(example)
            except Exception as exc:
                _fail(episode, exc)
            else:
                trajectory.messages = list(opening)
                trajectory.prompt_message_count = len(opening)
            episodes.append(episode)
    if failed_at_reset := sum(1 for e in episodes if not e.active):
        report(failed_at_reset, failed_at_reset)

    for turn in range(max_turns):
        active = [e for e in episodes if e.active]
        if not active:
            break
        turn_params = params
        if params.seed is not None:
            # A different stream per turn; within a call vLLM already gives each sample seed + index.
            turn_params = params.model_copy(update={"seed": params.seed + 1000 * turn})
        for (n, _), group in _batches(active, seeded=params.seed is not None).items():
            conversations = [members[0].trajectory.messages for members in group]
            tools = group[0][0].env.tools
            playing = [episode for members in group for episode in members]
            counted = _Counter(report)
            ends_now = on_progress is not None and all(getattr(e.env, "single_turn", False) for e in playing)
            results = backend.generate(
                conversations, turn_params.model_copy(update={"n": n}), tools=tools,
                on_completed=counted if ends_now else None,
            )
            for members, completions in zip(group, results, strict=True):
                for episode, completion in zip(members, completions, strict=True):
                    _advance(episode, turn, completion)
            ended = [e for e in playing if not e.active]
            # Settle the call: what ended minus what was counted as it arrived (failed items the backend answered
            # without a model call, e.g. a context overflow, are counted here).
            report(len(ended) - counted.n, sum(1 for e in ended if e.trajectory.error is not None))

    truncated = 0
    for episode in episodes:
        if episode.active:
            episode.active = False
            episode.trajectory.truncated = True
            truncated += 1
    if truncated:
        report(truncated, 0)
    return [e.trajectory for e in episodes]


def _no_progress(ended: int, failed: int) -> None:
    pass


class _Counter:
    """Passes completions that finished inside a backend call on as ended episodes, and remembers how many."""

    def __init__(self, report: Callable[[int, int], None]) -> None:
        self.report = report
        self.n = 0

    def __call__(self, completed: int) -> None:
        self.n += completed
        self.report(completed, 0)


def _batches(active: list[_Episode], *, seeded: bool) -> dict[tuple[int, str], list[list[_Episode]]]:
    """Group identical conversations (same messages and tools) and bucket the groups by size.

    The backend takes one `n` per call, so each distinct group size is one call; in practice a turn has
    one or two sizes (whole groups on the first turn, single episodes after they diverge).

    Identical prompts of *different* examples (Wordle's opening) are merged only when sampling is seeded: one prompt
    with one seed in one call would give identical samples, so they share a group and get distinct ones. Unseeded,
    they stay apart, so the first turn is one engine call (merging made groups of 2n, 3n ... and a call per size,
    0.58x raw vLLM in bench/generation_job_throughput.py) and vLLM's prefix cache shares their prompt anyway.
    """
    identical: dict[str, list[_Episode]] = defaultdict(list)
    for episode in active:
        owner = None if seeded else episode.trajectory.example_id
        key = json.dumps([owner, episode.trajectory.messages, episode.env.tools], sort_keys=True, default=str)
        identical[key].append(episode)
    batches: dict[tuple[int, str], list[list[_Episode]]] = defaultdict(list)
    for members in identical.values():
        tools_key = json.dumps(members[0].env.tools, sort_keys=True, default=str)
        batches[(len(members), tools_key)].append(members)
    return batches


def _advance(episode: _Episode, turn: int, completion: Completion) -> None:
    trajectory = episode.trajectory
    record = TurnRecord(
        index=turn,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        finish_reason=completion.finish_reason,
        latency_ms=completion.latency_ms,
        error=completion.error,
        error_kind=completion.error_kind,
        logprobs=completion.logprobs,
    )
    trajectory.turns.append(record)
    if completion.error is not None:
        episode.active = False
        trajectory.error, trajectory.error_kind = completion.error, completion.error_kind
        return
    # A copy: the message dict must not be shared between trajectories of one group.
    trajectory.messages.append(dict(completion.message))
    try:
        reply, done, info = episode.env.step(dict(completion.message))
    except Exception as exc:
        _fail(episode, exc)
        return
    trajectory.messages.extend(reply)
    record.info = dict(info)
    trajectory.info = dict(info)
    if done:
        episode.active = False
        trajectory.done = True


def _fail(episode: _Episode, exc: Exception) -> None:
    episode.active = False
    episode.trajectory.error = str(exc) or type(exc).__name__
    episode.trajectory.error_kind = "template" if isinstance(exc, PromptTemplateError) else "environment"
