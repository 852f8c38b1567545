"""Backend for any OpenAI-compatible chat server (`vllm serve`, OpenAI, others).

Built on `training.llm_client.OpenAICompatibleClient`, which bounds concurrency, rate-limits and retries
transient failures. Each of the `n` samples of a conversation is its own request (with `seed + index`
when a seed is set, as vLLM does for its own n): not every compatible server implements `n`, and one
failed sample must not take its siblings with it. The server's prefix cache makes the repeats cheap.

    backend = OpenAIBackend("http://127.0.0.1:8000/v1", "smollm2", max_concurrency=16)
    groups = backend.generate(conversations, SamplingParams(n=4, max_tokens=128, seed=0))
    backend.close()

`generate` is synchronous and runs the requests on the backend's own event loop in a helper thread, so it
works from Celery tasks, scripts and from inside a running event loop alike; async callers can await
`agenerate` instead. Tool calls: tool schemas are sent when `send_tools` is on (vLLM needs
`--enable-auto-tool-choice --tool-call-parser ...` to accept them); a server that answers with Hermes
`<tool_call>` text instead of `tool_calls` is handled by parsing the text here.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from training.generation.backends.base import OnCompleted
from training.generation.chat import parse_tool_calls
from training.generation.types import (
    Completion,
    Conversation,
    ErrorKind,
    FinishReason,
    Message,
    SamplingParams,
)
from training.llm_client import LLMCallError, OpenAICompatibleClient

T = TypeVar("T")

_FINISH: dict[str | None, FinishReason] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
)


def request_params(params: SamplingParams, sample_index: int) -> dict[str, Any]:
    """Body fields for one sample. Fields OpenAI itself rejects are sent only when they change something."""
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
    }
    if params.seed is not None:
        body["seed"] = params.seed + sample_index
    if params.stop:
        body["stop"] = list(params.stop)
    if params.logprobs:
        body["logprobs"] = True
    if params.top_k is not None:
        body["top_k"] = params.top_k
    if params.min_p > 0:
        body["min_p"] = params.min_p
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    return body


def classify_error(error: LLMCallError) -> ErrorKind:
    reason = error.reason.lower()
    if error.status in (400, 413, 422) and any(marker in reason for marker in _CONTEXT_MARKERS):
        return "context_overflow"
    if error.status is not None and 400 <= error.status < 500 and error.status not in (408, 409, 425, 429):
        return "bad_request"
    return "endpoint"  # down, timing out or overloaded after every retry


class OpenAIBackend:
    """`GenerationBackend` over HTTP; never raises for a failed request, returns it as an error item."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 8,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        retry_backoff_s: float = 0.5,
        send_tools: bool = True,
        allowed_hosts: tuple[str, ...] = (),
        client: OpenAICompatibleClient | None = None,
    ) -> None:
        self.client = client or OpenAICompatibleClient(
            base_url=base_url,
            model=model,
            api_key=api_key,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_base_s=retry_backoff_s,
            allowed_hosts=tuple(allowed_hosts),
        )
        self.send_tools = send_tools
        # One loop for the backend's lifetime, so the client's connection pool is reused across calls.
        self._loop = asyncio.new_event_loop()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-backend")
        self._lock = threading.Lock()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            return self._thread.submit(self._loop.run_until_complete, coroutine).result()

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        on_completed: OnCompleted | None = None,
    ) -> list[list[Completion]]:
        return self._run(self.agenerate(conversations, params, tools=tools, on_completed=on_completed))

    async def agenerate(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        on_completed: OnCompleted | None = None,
    ) -> list[list[Completion]]:
        calls = [
            self._counted(self._sample(conversation, params, index, tools), on_completed)
            for conversation in conversations
            for index in range(params.n)
        ]
        flat = await asyncio.gather(*calls)
        return [list(flat[i : i + params.n]) for i in range(0, len(flat), params.n)]

    @staticmethod
    async def _counted(call: Coroutine[Any, Any, Completion], on_completed: OnCompleted | None) -> Completion:
        completion = await call
        if on_completed is not None:
            on_completed(1)
        return completion

    async def _sample(
        self,
        conversation: Conversation,
        params: SamplingParams,
        index: int,
        tools: Sequence[dict[str, Any]] | None,
    ) -> Completion:
        body = request_params(params, index)
        if tools and self.send_tools:
            body["tools"] = list(tools)
        started = time.perf_counter()
        try:
            result = await self.client.chat([_wire_message(m) for m in conversation], **body)
        except LLMCallError as exc:
            return Completion.failed(
                str(exc),
                classify_error(exc),
                latency_ms=(time.perf_counter() - started) * 1000,
                attempts=exc.attempts,
            )
        except Exception as exc:  # a bug or an unexpected body must still come back as one failed item
            return Completion.failed(f"{type(exc).__name__}: {exc}", "endpoint")

        text = result.content or ""
        message: Message = {"role": "assistant", "content": result.content}
        tool_calls = result.message.get("tool_calls")
        if not tool_calls and tools:
            tool_calls = parse_tool_calls(text)
        if tool_calls:
            message["tool_calls"] = tool_calls
        finish = _FINISH.get(result.finish_reason, "stop")
        if tool_calls:
            finish = "tool_calls"
        return Completion(
            text=text,
            message=message,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            finish_reason=finish,
            latency_ms=result.latency_ms,
            logprobs=_logprobs(result.raw) if params.logprobs else None,
            attempts=result.attempts,
        )

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self.client.aclose())
        self._thread.submit(self._loop.close).result()
        self._thread.shutdown()


def _wire_message(message: Message) -> Message:
    # Only fields every compatible server accepts; trajectories may carry extras (name on tool messages).
    keep = {"role", "content", "tool_calls", "tool_call_id"}
    wire = {k: v for k, v in message.items() if k in keep and v is not None}
    wire.setdefault("content", "")
    return wire


def _logprobs(raw: dict[str, Any]) -> list[float] | None:
    content = ((raw.get("choices") or [{}])[0].get("logprobs") or {}).get("content")
    if not content:
        return None
    return [float(token["logprob"]) for token in content]
