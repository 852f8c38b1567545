"""Plain data exchanged by generation backends, environments and their callers.

Nothing here imports torch, vLLM or Django: the web process and the workers build these objects and read
them back without loading any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# One chat message in OpenAI format: {"role": ..., "content": ..., optional "tool_calls"/"tool_call_id"/"name"}.
Message = dict[str, Any]
Conversation = list[Message]

# Why a completion ended. "stop": end of turn or a stop string; "length": max_tokens or context reached;
# "tool_calls": the model asked for a tool; "error": nothing was generated, see `Completion.error`.
FinishReason = Literal["stop", "length", "tool_calls", "error"]

# Machine-readable class of a failed item, so the app can group failures and decide what to retry.
ErrorKind = Literal["context_overflow", "bad_request", "endpoint", "backend", "environment", "template"]


class GenerationError(Exception):
    """A whole backend cannot work (unknown model path, missing package, bad option).

    Raised, not returned: a misconfigured backend must stop a job before it writes anything. Failures of
    single items (context overflow, a failed HTTP call) are returned inside `Completion.error` instead.
    """


class SamplingParams(BaseModel):
    """How to sample; the same fields mean the same thing on every backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(1, ge=1, le=256, description="Completions per conversation (the GRPO group size).")
    max_tokens: int = Field(256, ge=1, description="Most tokens generated per completion (per turn).")
    temperature: float = Field(1.0, ge=0.0, le=10.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass; 1 disables it.")
    top_k: int | None = Field(
        None, ge=1, description="Sample among the k most likely tokens; None disables it."
    )
    min_p: float = Field(
        0.0, ge=0.0, le=1.0, description="Drop tokens below min_p * p(top token); 0 disables it."
    )
    repetition_penalty: float = Field(1.0, gt=0.0, description="1 disables it (not sent to OpenAI itself).")
    stop: list[str] = Field(default_factory=list, description="Strings that end a completion (not included).")
    seed: int | None = Field(
        None,
        description="Makes sampling reproducible. With n > 1 each sample gets its own stream (seed + index).",
    )
    logprobs: bool = Field(False, description="Return the log-probability of each sampled token.")

    @model_validator(mode="after")
    def _check(self) -> SamplingParams:
        if self.n > 1 and self.temperature == 0.0:
            raise ValueError(
                f"n ({self.n}) > 1 with temperature 0 gives {self.n} identical completions: "
                "raise temperature (e.g. 1.0) or set n to 1"
            )
        return self


@dataclass
class Completion:
    """One sampled assistant turn for one conversation.

    `message` is the full assistant message to append to the conversation (OpenAI format, with
    `tool_calls` when the model called tools); `text` is the raw generated text. Token counts are the
    backend's own (prompt_tokens is the rendered prompt, completion_tokens includes the end-of-turn token
    where the backend counts it). `latency_ms` is the wall time of the call that produced it: for batched
    backends (vLLM, transformers) that is the whole batch, since that is how long the item waited.
    """

    text: str
    message: Message
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    latency_ms: float
    error: str | None = None
    error_kind: ErrorKind | None = None
    logprobs: list[float] | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(
        cls,
        error: str,
        kind: ErrorKind,
        *,
        prompt_tokens: int = 0,
        latency_ms: float = 0.0,
        attempts: int = 1,
    ) -> Completion:
        return cls(
            text="",
            message={"role": "assistant", "content": ""},
            prompt_tokens=prompt_tokens,
            completion_tokens=0,
            finish_reason="error",
            latency_ms=latency_ms,
            error=error,
            error_kind=kind,
            attempts=attempts,
        )


@dataclass
class Example:
    """What an environment needs from a task example; the app builds it from its `Example` row.

    `id` is opaque to `training/` and is copied onto every trajectory so results can be matched back.
    Either `prompt` (rendered through the task's prompt template) or `messages` (used as they are).
    """

    id: Any = None
    prompt: str | None = None
    messages: Conversation | None = None
    answer: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
