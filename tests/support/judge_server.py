"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks (stdlib only, real sockets).

It stands in for hosted judge APIs we do not own: tests script latency, 429 + Retry-After, 500s, hangs, malformed
JSON and truncated bodies per request, and the benchmark uses its concurrency cap and random fault injection.

    with StubChatServer(responder, latency_s=0.05, max_concurrent=32, fault_rate=0.2) as server:
        client = OpenAICompatibleClient(server.base_url, "stub")
    server.stats -> {"requests", "rejected", "faults", "max_in_flight"}; server.bodies -> request bodies received
    server.in_flight_s -> {n: seconds spent with n requests in flight} (GET /stats has it as "in_flight_s")

    responder(body: dict, index: int) -> Reply | str     # a str is the assistant message content

    python -m tests.support.judge_server --latency 0.05 --max-concurrent 32 --fault-rate 0.2   # prints its URL

Without a responder it answers judge prompts: a `response_format` JSON Schema from `training.rubrics.prompts` gets
the best label (or the scale's middle) for every criterion and rollout, so benchmarks exercise real parsing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: str | None = None  # assistant message content (wrapped in a chat.completion body)
    body: Any = None  # overrides the whole body: dict → JSON, str/bytes sent verbatim
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float | None = None  # overrides the server latency
    truncate: bool = False  # announce the full Content-Length, send half, close
    hang: bool = False  # never answer
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str = "stop"


Responder = Callable[[dict[str, Any], int], "Reply | str"]


def completion_body(
    content: str | None,
    model: str,
    *,
    tool_calls: Any = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 10,
    completion_tokens: int | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if completion_tokens is None:
        completion_tokens = max(1, len(content or "") // 4)
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def judge_responder(body: dict[str, Any], index: int) -> str:
    """Best verdict for every criterion (and rollout) the request's JSON Schema asks for."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if not schema:
        return "Verdict: yes"
    items = schema["properties"]["verdicts"]["items"]
    variants = items.get("anyOf", [items])
    text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    match = re.search(r"rollouts 1 to (\d+)", text)
    n_rollouts = int(match.group(1)) if match else 1
    verdicts = []
    for rollout in range(1, n_rollouts + 1):
        for variant in variants:
            props = variant["properties"]
            verdict_schema = props["verdict"]
            verdict: Any = verdict_schema["enum"][-1] if "enum" in verdict_schema else 5
            entry = {"key": props["key"]["enum"][0], "rationale": "stub judge", "verdict": verdict}
            if "rollout" in props:
                entry = {"rollout": rollout, **entry}
            verdicts.append(entry)
    return json.dumps({"verdicts": verdicts})


class StubChatServer:
    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        max_concurrent: int | None = None,
        fault_rate: float = 0.0,
        seed: int = 0,
        model: str = "stub-judge",
        port: int = 0,
        keep_bodies: bool = True,
    ) -> None:
        self.responder = responder or judge_responder
        self.latency_s = latency_s
        self.max_concurrent = max_concurrent
        self.fault_rate = fault_rate
        self.model = model
        self.port = port
        self.keep_bodies = keep_bodies
        self.bodies: list[dict[str, Any]] = []
        self.stats = {"requests": 0, "rejected": 0, "faults": 0, "max_in_flight": 0}
        self._rng = random.Random(seed)
        self._in_flight = 0
        # Seconds spent at each number of requests in flight (answered ones, not refused): how full the server was.
        self.in_flight_s: dict[int, float] = {}
        self._level_since = time.perf_counter()
        self._index = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> str:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="stub-chat-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.base_url

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Connection handlers may be sleeping (latency, hang=True); finish them before the loop goes away.
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._loop.stop()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        if self._thread is not None:
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> StubChatServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
                }
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                keep_open = await self._respond(writer, method, path, raw)
                if not keep_open or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        head = f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(payload)}\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        writer.write(
            head.encode("latin-1") + b"\r\n" + (payload[: len(payload) // 2] if truncate else payload)
        )
        await writer.drain()

    async def _respond(self, writer: asyncio.StreamWriter, method: str, path: str, raw: bytes) -> bool:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            await self._send(writer, 200, json.dumps({"data": [{"id": self.model}]}).encode())
            return True
        if method == "GET" and path.rstrip("/").endswith("/stats"):
            self._level(0)
            stats = {
                **self.stats,
                "cpu_s": time.process_time(),
                "in_flight_s": {str(k): round(v, 6) for k, v in sorted(self.in_flight_s.items())},
            }  # whole process: meaningful when run standalone
            await self._send(writer, 200, json.dumps(stats).encode())
            return True
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await self._send(writer, 404, b'{"error": {"message": "not found"}}')
            return True
        self.stats["requests"] += 1
        if self.max_concurrent is not None and self._in_flight >= self.max_concurrent:
            self.stats["rejected"] += 1
            await self._send(
                writer, 429, b'{"error": {"message": "too many concurrent requests"}}', {"Retry-After": "0"}
            )
            return True
        self._level(1)
        self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self._in_flight)
        try:
            return await self._answer(writer, raw)
        finally:
            self._level(-1)

    def _level(self, change: int) -> None:
        now = time.perf_counter()
        self.in_flight_s[self._in_flight] = self.in_flight_s.get(self._in_flight, 0.0) + now - self._level_since
        self._level_since = now
        self._in_flight += change

    async def _answer(self, writer: asyncio.StreamWriter, raw: bytes) -> bool:
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            await self._send(writer, 400, b'{"error": {"message": "invalid JSON"}}')
            return True
        index = self._index
        self._index += 1
        if self.keep_bodies:
            self.bodies.append(body)
        if self.fault_rate and self._rng.random() < self.fault_rate:
            self.stats["faults"] += 1
            reply = self._rng.choice(
                [
                    Reply(429, body={"error": {"message": "rate limited"}}, headers={"Retry-After": "0"}),
                    Reply(500, body={"error": {"message": "internal error"}}),
                    Reply(200, body="{not json"),
                    Reply(200, content="x" * 200, truncate=True),
                ]
            )
        else:
            produced = self.responder(body, index)
            reply = Reply(content=produced) if isinstance(produced, str) else produced
        await asyncio.sleep(self.latency_s if reply.delay_s is None else reply.delay_s)
        if reply.hang:
            await asyncio.sleep(3600)
        if reply.body is not None:
            payload = (
                reply.body
                if isinstance(reply.body, bytes)
                else (reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
            )
        else:
            payload = json.dumps(
                completion_body(
                    reply.content, self.model, tool_calls=reply.tool_calls, finish_reason=reply.finish_reason
                )
            ).encode()
        await self._send(writer, reply.status, payload, reply.headers, truncate=reply.truncate)
        return not reply.truncate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--max-concurrent", type=int, default=None)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    server = StubChatServer(
        latency_s=args.latency,
        max_concurrent=args.max_concurrent,
        fault_rate=args.fault_rate,
        seed=args.seed,
        port=args.port,
        keep_bodies=False,
    )

    async def run() -> None:
        await server.serve()
        print(server.base_url, flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
