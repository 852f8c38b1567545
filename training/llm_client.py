"""Async client for OpenAI-compatible chat completions (vLLM `serve`, OpenAI, any compatible server), on aiohttp.

Used by LM judges and by the `openai` generation backend, so it knows nothing about rubrics.

    client = OpenAICompatibleClient(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen3-8B",
                                    api_key=None, max_concurrency=8, requests_per_minute=None,
                                    tokens_per_minute=None, timeout_s=60, max_retries=5,
                                    limiter=None)
    result: ChatResult = await client.chat(messages, temperature=0.0, max_tokens=512,
                                           response_format={...}, tools=[...])
    result.content, result.message (assistant dict, tool_calls kept), result.finish_reason,
    result.prompt_tokens, result.completion_tokens, result.latency_ms, result.attempts, result.raw, result.cost_usd
    client.usage -> Usage(requests, failures, retries, prompt_tokens, completion_tokens, cost_usd)
    await client.aclose()    # or: async with OpenAICompatibleClient(...) as client

Failures raise `LLMCallError(reason, status, attempts)`: immediately for non-transient errors (400, 401, 404, ...),
after `max_retries` retries for transient ones (429, 408, 5xx, timeouts, connection errors, truncated or malformed
bodies). Retries back off exponentially with jitter and never sooner than the server's Retry-After.
`params` go into the request body unchanged (any OpenAI/vLLM field: n, seed, stop, logprobs, extra sampling keys).

`limiter` (a `training.limits.SharedLimits`, e.g. one Redis-backed object per endpoint) makes the concurrency and
the per-minute rates hold across every client, thread and worker process using that endpoint: each attempt takes
a shared slot and books its requests/tokens there instead of in this client's buckets. The limiter's queue is then
the only one (no per-loop slots in front of it, unless this client's own max_concurrency is the lower): its order,
first come first served across the process's event loops, is what keeps a worker's judge chunks from ending
together (training.limits).

Transport: one aiohttp session per event loop (keep-alive pool, C HTTP parser, proxies from the environment). httpx's
stack cost ~1.5-2 ms of CPU per call, which capped judging at a few hundred calls/s on small machines. Retried requests
get the next free slot before first attempts (behind a shared limiter: right after the request at the head of its
queue), so an unlucky item is not starved.

The client can be used from several event loops (tests, TRL's reward loop, asgiref's async_to_sync): sessions and the
concurrency slots are kept per loop; the rate limiter and usage counters are shared. Call `aclose()` on each loop
that used the client; sessions of loops that closed without it are dropped on the next call.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import random
import ssl
import threading
import time
import urllib.parse
import urllib.request
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from training.limits import SharedLimits
from training.outbound import url_host_check

TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529})


class LLMCallError(RuntimeError):
    """A chat call that failed for good. `status` is the last HTTP status (None for network errors/timeouts)."""

    def __init__(self, reason: str, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(f"{reason} (status={status}, attempts={attempts})")
        self.reason = reason
        self.status = status
        self.attempts = attempts


@dataclass
class ChatResult:
    content: str | None
    message: dict[str, Any]
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    attempts: int
    raw: dict[str, Any]
    cost_usd: float | None = None


@dataclass
class Usage:
    requests: int = 0  # successful calls
    failures: int = 0  # calls that raised LLMCallError
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class _Transient(Exception):
    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class RateLimiter:
    """Token bucket per minute, shared across event loops: `acquire(n)` waits until n units fit.

    A bucket may go negative when the real cost (tokens used) exceeds the estimate; later callers then wait longer.
    """

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float) -> None:
        amount = min(amount, self.capacity)  # a request larger than a minute's budget still goes, alone
        while True:
            with self._lock:
                self._refill()
                if self.level >= amount:
                    self.level -= amount
                    return
                wait = (amount - self.level) / self.rate
            await asyncio.sleep(min(wait, 1.0))

    def adjust(self, delta: float) -> None:
        with self._lock:
            self._refill()
            self.level -= delta


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, `Retry-After: <seconds>` or `Retry-After: <HTTP date>`.

    `headers` must look keys up case-insensitively (aiohttp's response headers, multidict.CIMultiDict)."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Slots:
    """At most n requests in flight; a freed slot goes to a retry first, then to a first attempt, each in arrival order.

    With thousands of items queued, a plain FIFO sent every retried request to the back of the line, so a few
    unlucky items finished seconds after the rest; serving retries first bounds each item's latency.
    """

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiters: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, *, retry: bool) -> None:
        if self._free and not any(self._waiters):
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[0 if retry else 1].append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        for waiters in self._waiters:
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._free += 1


@dataclass
class _LoopState:
    session: aiohttp.ClientSession
    slots: _Slots | None  # None: the shared limiter is the only queue
    proxy: str | None  # from HTTP(S)_PROXY / NO_PROXY, like curl

    def drop(self) -> None:
        """Close without awaiting (the loop may be gone): sockets are closed, nothing warns about a leak."""
        connector = self.session.connector
        self.session.detach()
        if connector is not None:
            # The synchronous half of connector.close(): closes the sockets now (on a closed loop it only marks the
            # connector closed); the public close() is a coroutine, which a finalizer cannot await.
            connector._close()


def _drop_all(loops: dict[int, tuple[asyncio.AbstractEventLoop, _LoopState]]) -> None:
    for _, state in loops.values():
        state.drop()
    loops.clear()


@dataclass
class OpenAICompatibleClient:
    base_url: str
    model: str
    api_key: str | None = None
    max_concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0  # a server asking for longer waits this long, then we try again
    price_per_1k_prompt_tokens: float | None = None
    price_per_1k_completion_tokens: float | None = None
    supports_structured_output: bool = (
        True  # response_format json_schema (vLLM, OpenAI); off for servers without it
    )
    default_params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    # The operator's list of hosts this client may call (training.outbound); empty = any. Checked here, before a
    # session or socket exists, so a refused host sees no traffic at all.
    allowed_hosts: tuple[str, ...] = ()
    # Limits shared with every other user of the endpoint (training.limits); None: this client's own only.
    limiter: SharedLimits | None = None

    def __post_init__(self) -> None:
        url_host_check(self.base_url, allowed_hosts=self.allowed_hosts)
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency ({self.max_concurrency}) must be >= 1")
        self.base_url = self.base_url.rstrip("/")
        shared = self.limiter is not None  # the shared limiter books the rates instead
        self._rpm = RateLimiter(self.requests_per_minute) if self.requests_per_minute and not shared else None
        self._tpm = RateLimiter(self.tokens_per_minute) if self.tokens_per_minute and not shared else None
        self._loops: dict[int, tuple[asyncio.AbstractEventLoop, _LoopState]] = {}
        # A client dropped without aclose() (a judge built per job chunk) closes its sessions when collected.
        weakref.finalize(self, _drop_all, self._loops)
        self._usage_lock = threading.Lock()
        # Per-loop slots queue in front of a shared limiter only where they are the tighter limit: as a second queue
        # they would share the endpoint evenly between loops, so a worker's chunks would all end at once.
        self._own_slots = self.limiter is None or self.max_concurrency < getattr(
            self.limiter, "max_concurrency", self.max_concurrency + 1)

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is None or entry[0] is not loop:
            # asgiref's async_to_sync runs each call on a fresh loop: drop sessions of loops that are gone. Their
            # sockets died with the loop; detaching keeps aiohttp from warning about an unclosed session.
            for key, (old_loop, old) in list(self._loops.items()):
                if old_loop.is_closed():
                    old.drop()
                    del self._loops[key]
            headers = {"Content-Type": "application/json", **self.headers}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency, ssl=_ssl_context(), ttl_dns_cache=300),
                headers=headers,
                # The whole request is bounded in _post (a trickling server too); no per-operation timeouts here.
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
                # trust_env would look up ~/.netrc and the proxy variables in a thread on every request (two thread
                # hops, ~0.3 ms of CPU per call); the proxy is resolved once per session instead.
                trust_env=False,
            )
            slots = _Slots(self.max_concurrency) if self._own_slots else None
            entry = (loop, _LoopState(session, slots, _env_proxy(self.base_url)))
            self._loops[id(loop)] = entry
        return entry[1]

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._loops.pop(id(loop), None)
        if entry is not None:
            await entry[1].session.close()

    async def __aenter__(self) -> OpenAICompatibleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- calls ----------------------------------------------------------------------------------------------------
    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.price_per_1k_prompt_tokens is None and self.price_per_1k_completion_tokens is None:
            return None
        return (
            prompt_tokens * (self.price_per_1k_prompt_tokens or 0.0)
            + completion_tokens * (self.price_per_1k_completion_tokens or 0.0)
        ) / 1000

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # "equal jitter": spread out, never near zero
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self.max_retry_after_s))
        return float(delay)

    def _estimate_tokens(self, body: dict[str, Any]) -> float:
        # ~4 characters per token for the prompt, plus what the completion may use.
        prompt_chars = len(json.dumps(body.get("messages", []), ensure_ascii=False))
        return prompt_chars / 4 + float(body.get("max_tokens") or body.get("max_completion_tokens") or 256)

    async def chat(self, messages: list[dict[str, Any]], **params: Any) -> ChatResult:
        body = {"model": self.model, **self.default_params, **params, "messages": messages}
        state = self._state()
        limiter = self.limiter
        # Estimating serializes the prompt once more: only where a tokens-per-minute budget needs it.
        counts_tokens = self._tpm is not None or bool(limiter is not None and getattr(limiter, "tokens_per_minute", 1))
        estimate = self._estimate_tokens(body) if counts_tokens else 0.0
        attempts = 0
        last: _Transient | None = None
        while attempts <= self.max_retries:
            if attempts > 0:
                with self._usage_lock:
                    self.usage.retries += 1
                await asyncio.sleep(self._backoff(attempts, last.retry_after if last else None))
            attempts += 1
            if self._rpm:
                await self._rpm.acquire(1)
            if self._tpm:
                await self._tpm.acquire(estimate)
            if limiter is not None:
                await limiter.rate_acquire(estimate)
            local_slots = state.slots
            if local_slots is not None:
                await local_slots.acquire(retry=attempts > 1)
            shared_slot = False
            try:
                if limiter is not None:
                    await limiter.slot_acquire(retry=attempts > 1)
                    shared_slot = True
                started = time.perf_counter()
                data = await self._post(state, body)
                latency_ms = (time.perf_counter() - started) * 1000
            except _Transient as exc:
                last = exc
                continue
            except LLMCallError as exc:
                exc.attempts = attempts
                with self._usage_lock:
                    self.usage.failures += 1
                raise
            finally:
                if shared_slot:
                    assert limiter is not None
                    limiter.slot_release()
                if local_slots is not None:
                    local_slots.release()
            return self._result(data, latency_ms, attempts, estimate)
        assert last is not None
        with self._usage_lock:
            self.usage.failures += 1
        raise LLMCallError(f"gave up after {attempts} attempts: {last.reason}", last.status, attempts)

    async def _post(self, state: _LoopState, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                # No redirects: one could lead the key to a host the allowlist refuses.
                state.session.post(url, data=payload, proxy=state.proxy, allow_redirects=False) as response,
            ):
                status = response.status
                headers = response.headers
                content = await response.read()
        except TimeoutError:
            raise _Transient(f"request timed out after {self.timeout_s:g}s") from None
        except aiohttp.ClientError as exc:
            # Connection refused/reset, server disconnected, truncated body: the server may recover.
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        if status >= 400:
            detail = _error_detail(content)
            if status in TRANSIENT_STATUS or status >= 500:
                raise _Transient(f"HTTP {status}: {detail}", status, parse_retry_after(headers))
            raise LLMCallError(f"HTTP {status}: {detail}", status)
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Transient(f"malformed JSON body: {content[:200]!r}", status) from None
        if not isinstance(data, dict) or not data.get("choices"):
            raise _Transient(f"response has no choices: {str(data)[:200]}", status)
        return data

    def _result(self, data: dict[str, Any], latency_ms: float, attempts: int, estimate: float) -> ChatResult:
        choice = data["choices"][0]
        message = dict(choice.get("message") or {})
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        if self._tpm:
            self._tpm.adjust(prompt_tokens + completion_tokens - estimate)
        if self.limiter is not None and estimate:
            self.limiter.tokens_adjust(prompt_tokens + completion_tokens - estimate)
        cost = self.cost(prompt_tokens, completion_tokens)
        with self._usage_lock:
            self.usage.requests += 1
            self.usage.prompt_tokens += prompt_tokens
            self.usage.completion_tokens += completion_tokens
            self.usage.cost_usd += cost or 0.0
        return ChatResult(
            content=message.get("content"),
            message=message,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            attempts=attempts,
            raw=data,
            cost_usd=cost,
        )


def _error_detail(content: bytes) -> str:
    try:
        data = json.loads(content)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return content[:300].decode(errors="replace")


def _env_proxy(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY) names for this URL, if any."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading CA certificates costs ~50 ms per context: build one per process and share it.
    return ssl.create_default_context()
