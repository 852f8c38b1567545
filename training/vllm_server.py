"""vLLM's OpenAI-compatible server on a loopback port, for as long as a `with` block (or until its parent dies).

    with VllmServer("var/models/smollm2-135m-instruct", model_name="judge") as server:
        client = OpenAICompatibleClient(base_url=server.base_url, model=server.model_name)

The one way Rubricon serves a local model over HTTP, used where the caller speaks HTTP only:
- a training run whose judge is a local vLLM endpoint (training.grpo.rewards): the training process starts the server
  as its child and stops it when the run ends however it ends (the `with` block on return or exception; the kernel's
  parent-death signal when the training process is killed; the worker's cancel signals the training process, whose
  SIGTERM handler lets the block close);
- a generation job on a verifiers-backed task whose endpoint is a local engine (webapp.rollouts.engines): verifiers'
  episode loop talks to the model over HTTP only, so the worker serves the endpoint's model for the job.

The server runs in its own session (stopping it reaches vLLM's engine processes too) and gets SIGTERM when the thread
that started it dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG follows the creating thread, so start it from a thread
that lives as long as the work: a Celery pool thread, the training process's main thread). Nothing else knows the
server exists. This module imports no vLLM: `vllm_installed()` answers without loading it.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vllm_installed() -> bool:
    """Whether this interpreter can run vLLM's server (checked without importing vLLM, which loads torch)."""
    return importlib.util.find_spec("vllm") is not None


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(libc: ctypes.CDLL | None) -> Callable[[], None]:
    """What the child runs before exec: its own session (so stopping it reaches vLLM's engine processes too), and
    SIGTERM when the parent (the thread that started it) dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG). libc is loaded
    in the parent: the child only makes two system calls."""

    def run() -> None:
        os.setsid()
        if libc is not None:
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return run


class VllmServer:
    def __init__(
        self,
        model_path: str,
        *,
        model_name: str = "model",
        enforce_eager: bool = True,
        start_timeout_s: float = 600.0,
        log_path: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_path = model_path
        self.model_name = model_name
        self.enforce_eager = enforce_eager
        self.start_timeout_s = start_timeout_s
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        """Started and not exited (a server whose starting thread died got the parent-death signal)."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
            "--served-model-name", self.model_name, "--host", "127.0.0.1", "--port", str(self.port),
            *self.extra_args,
        ]
        if self.enforce_eager:
            command.append("--enforce-eager")
        return command

    def start(self) -> str:
        self.port = free_loopback_port()
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        with open(self.log_path if self.log_path is not None else os.devnull, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(_libc()),  # noqa: PLW1509
            )
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"the vLLM server exited with code {code} before it answered"
                                   + (f" (log: {self.log_path})" if self.log_path else ""))
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return self.base_url
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the vLLM server did not answer within {self.start_timeout_s:.0f} s")
            time.sleep(1.0)

    def stop(self, grace_s: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_s)

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
