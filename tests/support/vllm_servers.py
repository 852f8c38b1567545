"""vLLM's OpenAI-compatible server for tests: start one (`start_server`), and find the servers running on this machine
and the processes of their sessions (their engine processes) from /proc, for tests that check a server is gone after
the work that started it, however it ended."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from training.vllm_server import VllmServer

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
    """A started `training.vllm_server.VllmServer` (the launcher local endpoints use: its own session, gone with the
    process that started it), with the context length it was started with."""

    server: VllmServer
    max_model_len: int

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def model(self) -> str:
        return self.server.model_name

    def stop(self) -> None:
        self.server.stop()


def start_server(model_dir: Path, log: Path, *, model: str, max_model_len: int, timeout: float = 420) -> VLLMServer:
    """vLLM's OpenAI-compatible server serving `model_dir` as `model` on CPU (float32, eager, a 1 GiB KV cache, Hermes
    tool-call parsing), once it answers; its engine binds to VLLM_CPU_OMP_THREADS_BIND as it is now."""
    server = VllmServer(str(model_dir), model_name=model, start_timeout_s=timeout, log_path=log, extra_args=[
        "--max-model-len", str(max_model_len), "--dtype", "float32",
        "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    ])
    try:
        server.start()
    except RuntimeError as error:
        raise RuntimeError(f"{error}:\n{log.read_text(errors='replace')[-3000:]}") from error
    return VLLMServer(server, max_model_len)
