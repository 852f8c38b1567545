"""Fixtures: the bundled model, one vLLM engine and scripted HTTP servers (the real vLLM OpenAI server is
`vllm_server` in tests/conftest.py).

The vLLM engine is module-scoped (~10 s to start on CPU; on CPU one engine runs in a process at a time).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import engine_core_keep

REPO_ROOT = Path(__file__).resolve().parents[3]

# vLLM on CPU: a small KV cache, no hub access. Set before any engine starts (also inherited by the server).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_MODEL_LEN = 1024  # small, so a context overflow is cheap to provoke


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    from training.models import ensure_bundled_model

    return ensure_bundled_model(REPO_ROOT / "var" / "models")


@pytest.fixture(scope="module")
def vllm_backend(request: pytest.FixtureRequest, bundled_model: Path) -> Iterator[Any]:
    pytest.importorskip("vllm")
    from training.generation.backends.vllm_backend import VLLMBackend

    # float32: seeded runs must repeat token for token; bf16 kernels on AMX CPUs drift with batch composition.
    backend = VLLMBackend(bundled_model, enforce_eager=True, max_model_len=MAX_MODEL_LEN, dtype="float32")
    _ = backend.llm  # start the engine here, so its start-up is not billed to the first test
    engine_core_keep(request)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def transformers_backend(bundled_model: Path) -> Iterator[Any]:
    import torch

    from training.generation.backends.transformers_backend import TransformersBackend

    # One intra-op thread: on a small machine shared with other jobs, two OpenMP threads spin-wait on each
    # other and the same tests took 340 s instead of 45 s (measured at load average ~8 on 2 cores).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    backend = TransformersBackend(bundled_model, max_batch_size=8)
    yield backend
    backend.close()
    torch.set_num_threads(previous)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------ scripted HTTP server

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]


@dataclass
class ScriptedServer:
    """A local OpenAI-compatible stand-in whose answers a test scripts with `respond(body) -> reply`.

    A reply is (status, JSON body) or (status, body, headers); a `bytes` body is sent raw (malformed
    responses); status 0 closes the connection without answering.
    """

    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], Reply] = lambda body: (200, chat_response("ok"))


def chat_response(
    content: str | None,
    *,
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    prompt_tokens: int = 10,
    completion_tokens: int = 3,
    logprobs: list[float] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": finish_reason}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "x", "logprob": lp} for lp in logprobs]}
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    server_state = ScriptedServer(base_url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                server_state.requests.append(body)
            reply = server_state.respond(body)
            status, payload = reply[0], reply[1]
            headers = reply[2] if len(reply) > 2 else {}  # type: ignore[misc]
            if status == 0:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server_state
    httpd.shutdown()
    httpd.server_close()
