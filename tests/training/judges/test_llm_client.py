"""OpenAICompatibleClient against a real local HTTP server that the test scripts (tests.support.judge_server)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from tests.support.judge_server import Reply, StubChatServer
from training.llm_client import LLMCallError, OpenAICompatibleClient, parse_retry_after

MESSAGES = [{"role": "user", "content": "hi"}]


def script(*replies: Reply | str) -> Any:
    """Answer request i with replies[i] (the last one repeats)."""

    def responder(body: dict[str, Any], index: int) -> Reply | str:
        return replies[min(index, len(replies) - 1)]

    return responder


def client_for(server: StubChatServer, **options: Any) -> OpenAICompatibleClient:
    defaults: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0}
    return OpenAICompatibleClient(server.base_url, "stub-judge", **{**defaults, **options})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_success_returns_content_message_usage_and_cost() -> None:
    tool_calls = [{"id": "c1", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1}'}}]
    with StubChatServer(
        script(Reply(content="hello", tool_calls=tool_calls, finish_reason="tool_calls"))
    ) as server:
        client = client_for(
            server,
            price_per_1k_prompt_tokens=1.0,
            price_per_1k_completion_tokens=2.0,
            api_key="sk-test",
        )

        async def main() -> Any:
            async with client:
                return await client.chat(MESSAGES, temperature=0.5, max_tokens=7, seed=3)

        result = run(main())
    assert result.content == "hello"
    assert result.message["tool_calls"] == tool_calls
    assert result.finish_reason == "tool_calls"
    assert (result.prompt_tokens, result.completion_tokens, result.attempts) == (10, 1, 1)
    assert result.cost_usd == pytest.approx((10 * 1.0 + 1 * 2.0) / 1000)
    assert result.latency_ms > 0 and result.raw["model"] == "stub-judge"
    sent = server.bodies[0]
    assert sent["model"] == "stub-judge" and sent["temperature"] == 0.5 and sent["seed"] == 3
    assert sent["messages"] == MESSAGES
    assert client.usage.requests == 1 and client.usage.cost_usd == pytest.approx(0.012)


def test_retries_429_honouring_retry_after() -> None:
    with StubChatServer(
        script(Reply(429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0.3"}), "ok")
    ) as server:
        client = client_for(server)
        started = time.perf_counter()
        result = run(client.chat(MESSAGES))
    assert result.content == "ok" and result.attempts == 2
    assert time.perf_counter() - started >= 0.3  # backoff alone would have been ~10 ms
    assert client.usage.retries == 1


@pytest.mark.parametrize(
    "fault",
    [
        Reply(500, body={"error": {"message": "boom"}}),
        Reply(503, body="Service Unavailable"),
        Reply(200, body="{not json"),  # malformed JSON
        Reply(200, content="x" * 500, truncate=True),  # truncated body, connection closed
        Reply(200, body={"id": "x", "choices": []}),  # no choices
        Reply(delay_s=5.0, content="too late"),  # timeout
    ],
    ids=["500", "503-text", "malformed-json", "truncated", "no-choices", "timeout"],
)
def test_transient_faults_are_retried(fault: Reply) -> None:
    with StubChatServer(script(fault, "ok")) as server:
        client = client_for(server, timeout_s=0.5)
        result = run(client.chat(MESSAGES))
    assert result.content == "ok" and result.attempts == 2


def test_gives_up_with_a_typed_error_after_max_retries() -> None:
    with StubChatServer(script(Reply(500, body={"error": {"message": "always down"}}))) as server:
        client = client_for(server, max_retries=3)
        with pytest.raises(LLMCallError) as info:
            run(client.chat(MESSAGES))
    assert info.value.status == 500 and info.value.attempts == 4
    assert "always down" in info.value.reason
    assert server.stats["requests"] == 4 and client.usage.failures == 1


def test_hanging_server_times_out_and_fails_with_reason() -> None:
    with StubChatServer(script(Reply(hang=True))) as server:
        client = client_for(server, timeout_s=0.2, max_retries=1)
        started = time.perf_counter()
        with pytest.raises(LLMCallError) as info:
            run(client.chat(MESSAGES))
    assert "timed out" in info.value.reason and info.value.status is None and info.value.attempts == 2
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_non_transient_errors_fail_at_once(status: int) -> None:
    with StubChatServer(
        script(Reply(status, body={"error": {"message": "bad request: unknown field"}}))
    ) as server:
        client = client_for(server)
        with pytest.raises(LLMCallError) as info:
            run(client.chat(MESSAGES))
    assert info.value.status == status and info.value.attempts == 1
    assert "unknown field" in info.value.reason


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenAICompatibleClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff_base_s=0.01)
    with pytest.raises(LLMCallError) as info:
        run(client.chat(MESSAGES))
    assert info.value.attempts == 3 and "connect" in info.value.reason.lower()


def test_concurrency_is_bounded() -> None:
    with StubChatServer(script(Reply(delay_s=0.05, content="ok"))) as server:
        client = client_for(server, max_concurrency=4)

        async def main() -> list[Any]:
            return await asyncio.gather(*[client.chat(MESSAGES) for _ in range(20)])

        results = run(main())
    assert len(results) == 20
    assert server.stats["max_in_flight"] == 4


def test_server_concurrency_cap_429s_are_absorbed() -> None:
    with StubChatServer(script(Reply(delay_s=0.03, content="ok")), max_concurrent=2) as server:
        client = client_for(server, max_concurrency=6, max_retries=20)

        async def main() -> list[Any]:
            return await asyncio.gather(*[client.chat(MESSAGES) for _ in range(12)])

        results = run(main())
    assert all(r.content == "ok" for r in results)
    assert server.stats["rejected"] > 0 and client.usage.retries >= server.stats["rejected"]


def test_requests_per_minute_limit_spaces_requests() -> None:
    with StubChatServer(script("ok")) as server:
        # A bucket of 600/min holds 600 requests; drain it first so the limit is what we measure.
        client = client_for(server, requests_per_minute=600)
        client._rpm.level = 0  # type: ignore[union-attr]
        started = time.perf_counter()

        async def main() -> None:
            await asyncio.gather(*[client.chat(MESSAGES) for _ in range(3)])

        run(main())
    assert time.perf_counter() - started >= 0.25  # 10 requests/s → 3 requests need ~0.3 s


def test_tokens_per_minute_limit_waits_for_budget() -> None:
    with StubChatServer(script("ok")) as server:
        client = client_for(server, tokens_per_minute=6000)  # 100 tokens/s
        client._tpm.level = 0  # type: ignore[union-attr]
        started = time.perf_counter()
        run(client.chat(MESSAGES, max_tokens=20))
    assert time.perf_counter() - started >= 0.15  # ~25 estimated tokens at 100/s


def test_usable_from_several_event_loops() -> None:
    with StubChatServer(script("ok")) as server:
        client = client_for(server)
        assert run(client.chat(MESSAGES)).content == "ok"
        assert run(client.chat(MESSAGES)).content == "ok"  # a new loop gets its own connections
    assert client.usage.requests == 2


def test_retry_after_parsing() -> None:
    from multidict import CIMultiDict

    assert parse_retry_after(CIMultiDict({"Retry-After": "2"})) == 2.0
    assert parse_retry_after(CIMultiDict({"retry-after-ms": "150"})) == 0.15
    assert parse_retry_after(CIMultiDict({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert parse_retry_after(CIMultiDict({"Retry-After": "soon"})) is None
    assert parse_retry_after(CIMultiDict({})) is None


def test_chunked_bodies_and_connection_close_are_handled() -> None:
    """A server that answers chunked + Connection: close (like some proxies)."""

    async def main() -> tuple[int, Any, Any]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            body = json.dumps({"choices": [{"message": {"content": "chunked ok"}}]}).encode()
            half = len(body) // 2
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            for part in (body[:half], body[half:]):
                writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = OpenAICompatibleClient(f"http://127.0.0.1:{port}/v1", "m")
        first = await client.chat(MESSAGES)
        second = await client.chat(MESSAGES)  # the closed connection is replaced
        await client.aclose()
        server.close()
        return first.attempts, first.content, second.content

    assert run(main()) == (1, "chunked ok", "chunked ok")


def test_connections_of_closed_loops_are_forgotten() -> None:
    with StubChatServer(script("ok")) as server:
        client = client_for(server)
        for _ in range(5):
            asyncio.run(client.chat(MESSAGES))
        assert len(client._loops) == 1


@pytest.mark.parametrize("shared", [False, True], ids=["own slots", "shared limiter"])
def test_retries_get_the_next_free_slot_before_new_requests(shared: bool) -> None:
    from training.limits import LocalLimits

    def responder(body: dict[str, Any], index: int) -> Reply | str:
        if index == 0:
            return Reply(500, body={"error": {"message": "first one fails"}}, delay_s=0.0)
        return Reply(delay_s=0.02, content=body["messages"][0]["content"])

    with StubChatServer(responder) as server:
        # With a shared limiter, its queue is the only one (no per-loop slots): retries go first there.
        limiter = LocalLimits(max_concurrency=1) if shared else None
        client = client_for(server, max_concurrency=1, limiter=limiter)
        finished: list[str] = []

        async def one(name: str) -> None:
            await client.chat([{"role": "user", "content": name}])
            finished.append(name)

        async def main() -> None:
            await asyncio.gather(*[one(f"r{i}") for i in range(8)])

        run(main())
    # r0 failed once; its retry is served before the six requests still waiting for a first attempt (behind a shared
    # limiter, right after the one at the head of its queue, which is already waiting for the next slot).
    assert finished.index("r0") <= (2 if shared else 1), finished


def test_proxy_comes_from_the_environment_once_per_session(monkeypatch) -> None:
    from training.llm_client import _env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.corp")
    assert _env_proxy("https://api.openai.com/v1") == "http://proxy.internal:3128"
    assert _env_proxy("https://judge.corp/v1") is None
    assert _env_proxy("http://127.0.0.1:8000/v1") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert _env_proxy("https://api.openai.com/v1") is None
