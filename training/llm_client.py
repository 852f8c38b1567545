"""Async client for OpenAI-compatible chat completions (vLLM `serve`, OpenAI, any compatible server), on httpx.

Used by LM judges and by the `openai` generation backend, so it knows nothing about rubrics.

    client = OpenAICompatibleClient(base_url="http://127.0.0.1:8000/v1", model="Qwen/Qwen3-8B",
                                    api_key=None, max_concurrency=8, requests_per_minute=None,
                                    tokens_per_minute=None, timeout_s=60, max_retries=5)
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

Transport: by default requests go over `StreamTransport`, a lean keep-alive HTTP/1.1 client on asyncio streams
(httpx's own stack cost ~1.5 ms CPU per call, which capped judging at a few hundred calls/s on small machines);
`fast_transport=False` uses httpx's standard transport instead (proxies from the environment, compression).
Retried requests get the next free connection before first attempts, so an unlucky item is not starved.

The client can be used from several event loops (tests, TRL's reward loop): connections and the concurrency
queue are kept per loop; the rate limiter and usage counters are shared.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

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


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms`, `Retry-After: <seconds>` or `Retry-After: <HTTP date>`."""
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


class StreamTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 over asyncio streams: one connection, one request at a time.

    httpcore + anyio + h11 cost ~1.5 ms of CPU per request, which capped a 2-core machine at a few hundred judge
    calls/s; this does the same job in a fraction of that. The client gives each transport to one caller at a time,
    so no pooling is needed. No proxy support (set `fast_transport=False` to use httpx's own transport).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._conn: tuple[tuple[str, str, int], asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _connect(self, key: tuple[str, str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        scheme, host, port = key
        try:
            if scheme == "https":
                context = self._ssl_context or ssl.create_default_context()
                return await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
            return await asyncio.open_connection(host, port)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None

    def _close(self) -> None:
        if self._conn is not None:
            self._conn[2].close()
            self._conn = None

    async def aclose(self) -> None:
        self._close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        body = await request.aread()
        target = url.raw_path.decode("ascii")
        head = f"{request.method} {target} HTTP/1.1\r\n".encode("ascii")
        head += b"".join(k + b": " + v + b"\r\n" for k, v in request.headers.raw) + b"\r\n"
        for attempt in (1, 2):
            reused = self._conn is not None and self._conn[0] == key and not self._conn[2].is_closing()
            if not reused:
                self._close()
                reader, writer = await self._connect(key)
                self._conn = (key, reader, writer)
            assert self._conn is not None
            _, reader, writer = self._conn
            try:
                writer.write(head + body)
                await writer.drain()
                status_and_headers = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._close()
                partial = getattr(exc, "partial", b"")
                if reused and attempt == 1 and not partial:
                    continue  # the server closed an idle keep-alive connection; nothing was answered yet
                raise httpx.RemoteProtocolError("server disconnected without sending a response") from None
            except BaseException:
                self._close()  # cancelled or timed out mid-request: the connection's state is unknown
                raise
            break
        try:
            lines = status_and_headers.decode("latin-1").split("\r\n")
            version, status_text, *_ = lines[0].split(" ", 2) + [""]
            status = int(status_text)
            headers = [
                (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)
            ]
            lookup = {k.lower(): v for k, v in headers}
            if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                content = b""
            elif "chunked" in lookup.get("transfer-encoding", "").lower():
                content = await self._read_chunked(reader)
            elif "content-length" in lookup:
                content = await reader.readexactly(int(lookup["content-length"]))
            else:
                content = await reader.read()
                lookup["connection"] = "close"
        except asyncio.IncompleteReadError:
            self._close()
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
            ) from None
        except ValueError:
            self._close()
            raise httpx.RemoteProtocolError(
                f"malformed HTTP response head: {status_and_headers[:200]!r}"
            ) from None
        except BaseException:
            self._close()
            raise
        if lookup.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self._close()
        return httpx.Response(status, headers=headers, content=content, request=request)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)


class _SlotPool:
    """Connection slots handed out first to retries, then to first attempts, each in arrival order.

    With thousands of items queued, a plain FIFO sent every retried request to the back of the line, so a few
    unlucky items finished seconds after the rest; serving retries first bounds each item's latency.
    """

    def __init__(self, items: list[httpx.AsyncClient]) -> None:
        self._free = list(items)
        self._waiters: tuple[deque[asyncio.Future[httpx.AsyncClient]], ...] = (deque(), deque())

    async def acquire(self, *, retry: bool) -> httpx.AsyncClient:
        if self._free and not any(self._waiters):
            return self._free.pop()
        future: asyncio.Future[httpx.AsyncClient] = asyncio.get_running_loop().create_future()
        self._waiters[0 if retry else 1].append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())  # handed a slot just as we were cancelled: pass it on
            raise

    def release(self, item: httpx.AsyncClient) -> None:
        for waiters in self._waiters:
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(item)
                    return
        self._free.append(item)


@dataclass
class _LoopState:
    # One single-connection httpx client per concurrency slot, handed out by a slot pool: the pool bounds
    # concurrency, and httpcore's pool bookkeeping (which scans every connection on every request and dominated CPU
    # at a few hundred requests/s) stays O(1).
    clients: _SlotPool
    all_clients: list[httpx.AsyncClient]
    # With fast_transport, requests go straight to each client's StreamTransport: httpx.AsyncClient's own layer
    # (URL merging, cookies, auth and redirect hooks) was a quarter of the client's CPU per call.
    transports: dict[int, StreamTransport]


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
    fast_transport: bool = True  # StreamTransport; False = httpx's default transport (proxies, HTTP/2 ...)
    default_params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency ({self.max_concurrency}) must be >= 1")
        self.base_url = self.base_url.rstrip("/")
        self._rpm = RateLimiter(self.requests_per_minute) if self.requests_per_minute else None
        self._tpm = RateLimiter(self.tokens_per_minute) if self.tokens_per_minute else None
        self._loops: dict[int, tuple[asyncio.AbstractEventLoop, _LoopState]] = {}
        self._usage_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is None or entry[0] is not loop:
            # Callers like asgiref's async_to_sync run each call on a fresh loop: forget connections of loops that
            # are gone (their sockets close when collected) so a long-lived client does not accumulate them.
            for key, (old_loop, _) in list(self._loops.items()):
                if old_loop.is_closed():
                    del self._loops[key]
            # identity: the fast transport does not decompress, and judge replies are small.
            headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", **self.headers}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
            # Loading CA certificates costs ~50 ms per context: build one and share it.
            ssl_context = ssl.create_default_context()
            self._request_headers = headers
            clients, transports = [], {}
            for _ in range(self.max_concurrency):
                transport = StreamTransport(ssl_context) if self.fast_transport else None
                client = httpx.AsyncClient(
                    headers=headers,
                    timeout=httpx.Timeout(self.timeout_s),
                    limits=limits,
                    verify=ssl_context,
                    transport=transport,
                )
                clients.append(client)
                if transport is not None:
                    transports[id(client)] = transport
            entry = (loop, _LoopState(_SlotPool(clients), clients, transports))
            self._loops[id(loop)] = entry
        return entry[1]

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        entry = self._loops.pop(id(loop), None)
        if entry is not None:
            for client in entry[1].all_clients:
                await client.aclose()

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
            delay = max(delay, min(retry_after, self.max_retry_after_s))
        return delay

    def _estimate_tokens(self, body: dict[str, Any]) -> float:
        # ~4 characters per token for the prompt, plus what the completion may use.
        prompt_chars = len(json.dumps(body.get("messages", []), ensure_ascii=False))
        return prompt_chars / 4 + float(body.get("max_tokens") or body.get("max_completion_tokens") or 256)

    async def chat(self, messages: list[dict[str, Any]], **params: Any) -> ChatResult:
        body = {"model": self.model, **self.default_params, **params, "messages": messages}
        state = self._state()
        estimate = self._estimate_tokens(body) if self._tpm else 0.0
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
            client = await state.clients.acquire(retry=attempts > 1)
            try:
                started = time.perf_counter()
                data = await self._post(client, state.transports.get(id(client)), body)
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
                state.clients.release(client)
            return self._result(data, latency_ms, attempts, estimate)
        assert last is not None
        with self._usage_lock:
            self.usage.failures += 1
        raise LLMCallError(f"gave up after {attempts} attempts: {last.reason}", last.status, attempts)

    async def _post(
        self, client: httpx.AsyncClient, transport: StreamTransport | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        try:
            # httpx's timeout is per network operation; this bounds the whole request (a trickling server too).
            async with asyncio.timeout(self.timeout_s):
                if transport is None:
                    response = await client.post(url, json=body)
                else:
                    content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
                    request = httpx.Request(
                        "POST", url, headers=self._request_headers, content=content.encode()
                    )
                    response = await transport.handle_async_request(request)
        except TimeoutError:
            raise _Transient(f"request timed out after {self.timeout_s:g}s") from None
        except httpx.TimeoutException as exc:
            raise _Transient(f"request timed out after {self.timeout_s:g}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            # Connection refused/reset, truncated body (RemoteProtocolError): the server may recover.
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        status = response.status_code
        if status >= 400:
            detail = _error_detail(response)
            if status in TRANSIENT_STATUS or status >= 500:
                raise _Transient(f"HTTP {status}: {detail}", status, parse_retry_after(response.headers))
            raise LLMCallError(f"HTTP {status}: {detail}", status)
        try:
            data = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Transient(f"malformed JSON body: {response.text[:200]!r}", status) from None
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


def _error_detail(response: httpx.Response) -> str:
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return response.text[:300]
