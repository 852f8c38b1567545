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

The model runs in vLLM's engine process (the `uni` executor, vLLM's own choice for one GPU, asked for explicitly): on
CPU vLLM would otherwise move it into a worker process of its own, one more process importing vLLM and torch (~10 CPU
s), with the engine process spinning on shared memory while the worker computes — on a 2-core machine the server
started in 21 s instead of 32 s and generated ~30 % faster (docs/benchmarks.md). `VLLM_CPU_OMP_THREADS_BIND`, which
vLLM applies to that worker process only, is honoured as the server's CPU affinity (`omp_bind_cores`).
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


# Arguments after which vLLM runs more than one model worker: the server then keeps vLLM's own executor choice.
_PARALLEL_ARGS = ("--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp", "--data-parallel-size", "-dp",
                  "--distributed-executor-backend")


def omp_bind_cores(value: str | None = None) -> list[int] | None:
    """The cores `VLLM_CPU_OMP_THREADS_BIND` (or `value`) names for a CPU engine's threads: None for vLLM's own
    choices ("auto", the default, or "nobind"), else the list ("0-3,6" → [0, 1, 2, 3, 6]). A value vLLM would not
    understand, one list per rank ("0-1|2-3": one model worker here), or a core this process may not run on is a
    ValueError, before any engine starts."""
    raw = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") if value is None else value
    text = raw.strip()
    if text in ("", "auto", "nobind"):
        return None
    cores: list[int] = []
    try:
        if "|" in text:
            raise ValueError("one list per rank, and an engine here has one model worker")
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            low, high = int(first), int(last or first)
            if low < 0 or high < low:
                raise ValueError(f"{part!r} is not a core range")
            cores.extend(range(low, high + 1))
    except ValueError as error:
        raise ValueError(f"VLLM_CPU_OMP_THREADS_BIND={raw!r} is not a list of cores such as '0-3,6' "
                         f"(or 'auto' / 'nobind'): {error}") from None
    allowed = os.sched_getaffinity(0)
    if not set(cores) <= allowed:
        raise ValueError(f"VLLM_CPU_OMP_THREADS_BIND={raw!r} names cores this process may not use "
                         f"(it may use {sorted(allowed)})")
    return sorted(set(cores))


def _libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent(libc: ctypes.CDLL | None, cores: list[int] | None = None) -> Callable[[], None]:
    """What the child runs before exec: its own session (so stopping it reaches vLLM's engine processes too), and
    SIGTERM when the parent (the thread that started it) dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG); on `cores`
    only, when given (its engine's OpenMP threads count and stay on them). libc is loaded in the parent: the child only
    makes system calls."""

    def run() -> None:
        os.setsid()
        if libc is not None:
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if cores is not None:
            os.sched_setaffinity(0, cores)

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
        if self._one_worker:
            command += ["--distributed-executor-backend", "uni"]
        return command

    @property
    def _one_worker(self) -> bool:
        """Whether the model runs in vLLM's engine process (the module docstring): unless the arguments ask for more
        than one worker or for an executor."""
        return not any(arg.split("=", 1)[0] in _PARALLEL_ARGS for arg in self.extra_args)

    def start(self) -> str:
        try:
            cores = omp_bind_cores()
        except ValueError as error:
            raise RuntimeError(f"the vLLM server was not started: {error}") from None
        self.port = free_loopback_port()
        env = dict(os.environ)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        if self._one_worker:
            # vLLM's CPU platform replaces `uni` with a worker process unless this is off; the server's engine process
            # is its own either way (the OpenAI server always runs the engine core in a process of its own).
            env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        with open(self.log_path if self.log_path is not None else os.devnull, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(_libc(), cores),  # noqa: PLW1509
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
