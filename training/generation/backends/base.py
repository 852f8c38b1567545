"""The one interface every generation backend implements, and the config that picks one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.generation.types import Completion, Conversation, SamplingParams

# Called with how many completions (samples) just finished inside one `generate` call, as they finish; the
# engine's own loop calls it, so it must be cheap and must not block (count, do not write to a database).
OnCompleted = Callable[[int], None]


@runtime_checkable
class GenerationBackend(Protocol):
    """Generates assistant turns for a batch of chat conversations.

    Contract (tested for every implementation):
    - `generate` returns one list per conversation, in input order, each with exactly `params.n` completions.
    - A failed item (context overflow, failed HTTP call after retries) is a `Completion` with `error` set and
      `finish_reason="error"`; it never raises and never fails the other items.
    - A backend that cannot work at all (unknown model path, package missing) raises `GenerationError`,
      at construction when that can be checked cheaply, else on first use.
    - `tools` are OpenAI function schemas offered to the model; tool calls come back as OpenAI `tool_calls`
      on `Completion.message`.
    - Synchronous and not thread-safe: one caller at a time (a Celery task, a script). Backends that talk
      HTTP run their own event loop inside `generate`.
    - `on_completed(k)` is called as completions finish inside the call (k of them), so a caller can show
      progress before the whole batch returns; the counts add up to the completions returned.
    """

    name: str

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        on_completed: OnCompleted | None = None,
    ) -> list[list[Completion]]: ...

    def close(self) -> None:
        """Free the engine / connections. The backend is unusable afterwards."""
        ...


BackendKind = Literal["vllm", "openai", "transformers"]


class BackendConfig(BaseModel):
    """Everything needed to build a backend; the app fills it from a `ModelEndpoint` row."""

    model_config = ConfigDict(extra="forbid")

    kind: BackendKind = Field(
        description="vllm: offline engine; openai: HTTP server; transformers: CPU fallback."
    )
    model: str = Field(
        description="Local model directory (vllm, transformers) or the model name the server knows (openai)."
    )
    # openai
    base_url: str | None = Field(None, description="Server root including /v1, e.g. http://gpu-1:8000/v1.")
    api_key: str | None = Field(None, description="Bearer token; the app reads it from a named env variable.")
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Hosts/CIDRs the operator lets endpoints call (openai); empty = any (training.outbound)."
    )
    max_concurrency: int = Field(8, ge=1, description="Most requests in flight at once (openai).")
    requests_per_minute: int | None = Field(None, ge=1, description="Client-side rate limit (openai).")
    tokens_per_minute: int | None = Field(None, ge=1, description="Client-side token rate limit (openai).")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds (openai).")
    max_retries: int = Field(5, ge=0, description="Retries of transient HTTP failures (openai).")
    retry_backoff_s: float = Field(
        0.5, gt=0, description="First retry's backoff in seconds, doubling per retry with jitter (openai)."
    )
    send_tools: bool = Field(
        True,
        description="Send tool schemas in the request (openai). Turn off for servers started without "
        "tool-call support (vLLM without --enable-auto-tool-choice rejects requests with tools).",
    )
    # vllm
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one vLLM engine spans (vllm).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may use.")
    max_model_len: int | None = Field(None, ge=16, description="Context length; None uses the model's.")
    enforce_eager: bool = Field(False, description="Skip CUDA graphs / compilation (vllm); True on CPU.")
    dtype: str = Field("auto", description="Weights dtype for vllm/transformers: auto, float32, bfloat16...")
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra vllm.LLM(...) arguments.")
    # transformers
    device: str = Field("cpu", description="torch device for the transformers backend.")
    max_batch_size: int = Field(8, ge=1, description="Sequences per forward pass (transformers).")

    @model_validator(mode="after")
    def _check(self) -> BackendConfig:
        if self.kind == "openai" and not self.base_url:
            raise ValueError("base_url is required for an openai backend, e.g. http://localhost:8000/v1")
        return self


def create_backend(config: BackendConfig) -> GenerationBackend:
    """Build the backend `config` names. Heavy packages are imported here, not at module import."""
    if config.kind == "vllm":
        from training.generation.backends.vllm_backend import VLLMBackend

        return VLLMBackend(
            config.model,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager,
            dtype=config.dtype,
            engine_kwargs=config.engine_kwargs,
        )
    if config.kind == "transformers":
        from training.generation.backends.transformers_backend import TransformersBackend

        return TransformersBackend(
            config.model, device=config.device, dtype=config.dtype, max_batch_size=config.max_batch_size
        )
    from training.generation.backends.openai_backend import OpenAIBackend

    assert config.base_url is not None  # checked by the validator
    return OpenAIBackend(
        config.base_url,
        config.model,
        api_key=config.api_key,
        max_concurrency=config.max_concurrency,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
        timeout_s=config.timeout_s,
        max_retries=config.max_retries,
        retry_backoff_s=config.retry_backoff_s,
        send_tools=config.send_tools,
        allowed_hosts=config.allowed_hosts,
    )
