"""vLLM's OpenAI-compatible server for tests: start one (`start_server`), and find the servers running on this machine
and the processes of their sessions (their engine processes) from /proc, for tests that check a server is gone after
the work that started it, however it ended."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

SERVER_MODULE = b"vllm.entrypoints.openai.api_server"


def _stat(pid: str) -> list[str] | None:
    try:
        return (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def server_pids(*, port: int | None = None, parent: int | None = None) -> list[int]:
    """Live vLLM servers: those listening on `port` (by their command line), or children of `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if SERVER_MODULE not in cmdline:
            continue
        stat = _stat(entry.name)
        if stat is None or stat[0] == "Z":
            continue
        if port is not None and str(port).encode() not in cmdline:
            continue
        if parent is not None and int(stat[1]) != parent:  # field 4 of stat: the parent's pid
            continue
        found.append(int(entry.name))
    return sorted(found)


def server_port(pid: int) -> int:
    cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    return int(cmdline[cmdline.index(b"--port") + 1])


def session_members(sessions: list[int]) -> list[int]:
    """Live processes whose session is one of `sessions` (a server started in its own session leads it)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None and stat[0] != "Z" and int(stat[3]) in sessions:  # field 6 of stat: the session id
                members.append(int(entry.name))
    return sorted(set(members))


def wait_gone(sessions: list[int], timeout: float) -> None:
    """Wait until no process of these servers' sessions is left; fail with the survivors."""
    deadline = time.monotonic() + timeout
    while left := session_members(sessions):
        assert time.monotonic() < deadline, f"vLLM server processes still running after {timeout:.0f} s: {left}"
        time.sleep(0.5)


@dataclass
class VLLMServer:
    base_url: str
    model: str
    max_model_len: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(model_dir: Path, log: Path, *, model: str, max_model_len: int, cwd: Path,
                 timeout: float = 420) -> VLLMServer:
    """`vllm.entrypoints.openai.api_server` serving `model_dir` as `model` on CPU (float32, eager, a 1 GiB KV cache,
    Hermes tool-call parsing), once it answers; its engine binds to VLLM_CPU_OMP_THREADS_BIND as it is now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", model, "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", str(max_model_len), "--dtype", "float32",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    server = VLLMServer(f"http://127.0.0.1:{port}/v1", model, max_model_len, process, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base_url}/models", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"vLLM server did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(1)
