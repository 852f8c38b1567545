"""What a judge backend is, and the content-addressed cache in front of it.

A judge backend turns chat messages into text; prompt rendering and verdict parsing live in `training.rubrics`.

    class JudgeBackend(Protocol):
        fingerprint: str                   # model + sampling params; changes whenever answers could change
        supports_structured_output: bool   # may be sent a JSON Schema to constrain its output
        async def complete(self, messages, *, json_schema=None) -> JudgeCompletion

    class JudgeCache(Protocol):            # back it with any store; sync or async methods both work
        def get(self, key: str) -> dict | None          # or: async def get
        def put(self, key: str, value: dict) -> None    # or: async def put
        # optional: def flush() / async def flush(), called when the last call in flight on a loop ends

    cache_key(identity, messages, json_schema) -> str   # sha256 hex of server/engine + model + sampling + prompt
    CachedJudge(backend, cache)   # a JudgeBackend; identical requests make zero backend calls,
                                  # concurrent identical requests share one call
    InMemoryJudgeCache()

The Django side implements JudgeCache over its JudgeCache table (async ORM or sync_to_async); values are plain
JSON-serializable dicts (`JudgeCompletion.to_cache()`).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class JudgeCallError(RuntimeError):
    """The judge could not answer (endpoint down, retries exhausted, model failed). `reason` is human-readable."""

    def __init__(self, reason: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.attempts = attempts


@dataclass
class JudgeCompletion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float | None = None
    cached: bool = False
    structured: bool = False  # the output was constrained by the JSON Schema
    extra: dict[str, Any] = field(default_factory=dict)

    def to_cache(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_ms": self.latency_ms,
            "structured": self.structured,
        }

    @classmethod
    def from_cache(cls, value: dict[str, Any]) -> JudgeCompletion:
        return cls(
            text=value["text"],
            prompt_tokens=int(value.get("prompt_tokens", 0)),
            completion_tokens=int(value.get("completion_tokens", 0)),
            latency_ms=float(value.get("latency_ms", 0.0)),
            structured=bool(value.get("structured", False)),
            cached=True,
        )


@runtime_checkable
class JudgeBackend(Protocol):
    fingerprint: str
    supports_structured_output: bool

    async def complete(
        self, messages: list[dict[str, Any]], *, json_schema: dict[str, Any] | None = None
    ) -> JudgeCompletion: ...


class JudgeCache(Protocol):
    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: dict[str, Any]) -> Any: ...


def sampling_fingerprint(model: str, params: dict[str, Any]) -> str:
    """'model|{"max_tokens":512,"temperature":0.0}' — stable across dict ordering."""
    return f"{model}|{json.dumps(params, sort_keys=True, separators=(',', ':'), default=str)}"


def cache_key(fingerprint: str, messages: list[dict[str, Any]], json_schema: dict[str, Any] | None) -> str:
    payload = json.dumps(
        {"judge": fingerprint, "messages": messages, "schema": json_schema},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class InMemoryJudgeCache:
    """Dict-backed cache for tests, benchmarks and single-process training runs."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.data.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value

    def __len__(self) -> int:
        return len(self.data)


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class CachedJudge:
    """A JudgeBackend that answers repeated requests from `cache` and counts the calls it really made."""

    def __init__(self, backend: JudgeBackend, cache: JudgeCache | None = None) -> None:
        self.backend = backend
        self.cache: JudgeCache = cache if cache is not None else InMemoryJudgeCache()
        self.fingerprint = backend.fingerprint
        # Which server or engine answers, besides the model and sampling: two servers with one model name (a
        # faulty and a healthy one, a base model and a fine-tune) must not share cached answers. The fingerprint
        # stored with scores stays model + sampling + prompt, so moving a judge to another URL keeps its identity.
        self.cache_identity: str = getattr(backend, "cache_identity", None) or backend.fingerprint
        self.supports_structured_output = backend.supports_structured_output
        self.calls = 0
        self.hits = 0
        # Told of every real backend call as it ends (None: the call failed), so a job can book what it spent even
        # if its worker dies before the results are stored. A sync function or a coroutine function.
        self.on_call: Callable[[JudgeCompletion | None], Any] | None = None
        # Futures are bound to one event loop; TRL runs async rewards on its own daemon loop, tests on others.
        self._inflight: dict[tuple[int, str], asyncio.Future[JudgeCompletion]] = {}

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        json_schema: dict[str, Any] | None = None,
        accept: Callable[[JudgeCompletion], bool] | None = None,
    ) -> JudgeCompletion:
        """`accept` says whether an answer is a verdict worth keeping (it parses): others are returned but not
        cached, and a cached answer it refuses is asked again (and replaced)."""
        key = cache_key(self.cache_identity, messages, json_schema)
        hit = await _maybe_await(self.cache.get(key))
        if hit is not None:
            cached = JudgeCompletion.from_cache(hit)
            if accept is None or accept(cached):
                self.hits += 1
                return cached
        slot = (id(asyncio.get_running_loop()), key)
        pending = self._inflight.get(slot)
        if pending is not None:
            # Same request already on the wire (e.g. the total and a per-criterion reward in one TRL step).
            self.hits += 1
            result = await asyncio.shield(pending)
            return JudgeCompletion(**{**result.__dict__, "cached": True})
        future: asyncio.Future[JudgeCompletion] = asyncio.get_running_loop().create_future()
        self._inflight[slot] = future
        try:
            self.calls += 1
            try:
                result = await self.backend.complete(messages, json_schema=json_schema)
            except Exception:
                await self._spent(None)
                raise
            await self._spent(result)
            if accept is None or accept(result):
                await _maybe_await(self.cache.put(key, result.to_cache()))
                if not any(other[0] == slot[0] and other != slot for other in self._inflight):
                    # The last call in flight on this loop: a cache that buffers its writes stores them now, so no
                    # caller (a job chunk, a dry run, a preview, a position check) can end its loop with answers
                    # it paid for still unwritten.
                    await self._cache_flush()
            future.set_result(result)
            return result
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting; mark the exception retrieved so asyncio does not log it.
            future.exception()
            raise
        finally:
            self._inflight.pop(slot, None)

    async def _cache_flush(self) -> None:
        flush = getattr(self.cache, "flush", None)
        if flush is not None:
            await _maybe_await(flush())

    async def _spent(self, completion: JudgeCompletion | None) -> None:
        if self.on_call is not None:
            await _maybe_await(self.on_call(completion))
