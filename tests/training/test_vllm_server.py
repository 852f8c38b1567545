"""A local vLLM judge during training is vLLM's own OpenAI-compatible server, started for the run on a loopback port:
it answers judge calls, and it is gone after the run — when the run's `with` block closes, and when the training
process that started it is killed with SIGKILL (the kernel's parent-death signal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.vllm_servers import server_pids, session_members
from training.vllm_server import VllmServer, omp_bind_cores

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# What training.grpo.run does with a local vLLM judge, twice: once closed normally, once killed with SIGKILL.
SCRIPT = textwrap.dedent("""
    import asyncio, contextlib, json, sys, time
    from pathlib import Path
    from training.grpo.config import LocalJudge
    from training.grpo.rewards import _local_judge
    from training.rubrics.engine import RubricEngine
    from training.rubrics.spec import validate_spec
    from training.rubrics.types import Rollout

    spec = validate_spec({"criteria": [{"key": "polite", "title": "Polite", "kind": "judge",
                                         "question": "Is the answer polite?",
                                         "choices": [{"label": "no"}, {"label": "yes"}]}]})
    local = LocalJudge(model="bundled", engine="vllm", max_new_tokens=64, start_timeout_s=400)
    rollout = Rollout(prompt="Say hello.", completion="Hello, nice to meet you!")
    for phase in ("closed", "killed"):
        with contextlib.ExitStack() as stack:
            judge = _local_judge(local, models_dir=Path(sys.argv[1]), resources=stack, log_dir=Path(sys.argv[2]))
            result = asyncio.run(RubricEngine(spec, judge=judge).ascore(rollout)).criteria["polite"]
            print(json.dumps({"phase": phase, "score": result.score, "error": result.error,
                              "raw": result.raw_response, "base_url": judge.client.base_url}), flush=True)
            if phase == "killed":
                time.sleep(3600)  # the test kills this process with SIGKILL
        print(json.dumps({"phase": "stopped"}), flush=True)
""")


def _server_processes(port: int) -> list[int]:
    """Pids of the vLLM server on `port` and of every process in its session (its engine processes)."""
    servers = server_pids(port=port)
    return sorted(set(servers) | set(session_members(servers)))


def _wait_gone(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _server_processes(port):
        assert time.monotonic() < deadline, f"vLLM judge server still running: {_server_processes(port)}"
        time.sleep(0.5)


@pytest.mark.vllm_engine
def test_the_local_vllm_judge_server_answers_and_is_gone_after_the_run_even_when_the_run_is_killed(tmp_path):
    pytest.importorskip("vllm")
    import psutil
    from django.conf import settings

    models_dir = str(settings.MODELS_DIR)
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "")
    core = int(bind) if bind.isdigit() else min(os.sched_getaffinity(0))  # the core this test holds under xdist
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, models_dir, str(tmp_path)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "VLLM_CPU_OMP_THREADS_BIND": str(core)})
    try:
        lines = iter(process.stdout)

        def read() -> dict:
            line = next(lines, "")
            assert line, f"script ended: {process.wait()}\n{(tmp_path / 'judge-server.log').read_text()[-3000:]}"
            return json.loads(line)

        first = read()
        assert first["phase"] == "closed" and first["error"] in ("", None), first
        assert first["score"] in (0.0, 1.0) and first["base_url"].startswith("http://127.0.0.1:")
        port = int(first["base_url"].rsplit(":", 1)[1].split("/")[0])
        assert read() == {"phase": "stopped"}
        _wait_gone(port, timeout=5)

        second = read()
        assert second["phase"] == "killed" and second["score"] in (0.0, 1.0), second
        port = int(second["base_url"].rsplit(":", 1)[1].split("/")[0])
        assert _server_processes(port)
        # The model runs in vLLM's engine process (no model worker of its own), on the bound core only.
        server = [psutil.Process(pid) for pid in _server_processes(port)]
        assert not [p.name() for p in server if p.name().startswith("VLLM::Worker")]
        assert [p.name() for p in server if p.name().startswith("VLLM::EngineCore")]
        assert {tuple(p.cpu_affinity()) for p in server} == {(core,)}
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        _wait_gone(port, timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize(("value", "cores"), [("auto", None), ("nobind", None), ("", None), ("0", [0]),
                                              (" 0 ", [0]), ("0,0", [0])])
def test_the_bind_names_cores_as_vllm_reads_them(value, cores):
    assert omp_bind_cores(value) == cores


def test_a_bind_over_every_allowed_core_is_read_as_their_list():
    allowed = sorted(os.sched_getaffinity(0))
    if allowed != list(range(allowed[0], allowed[-1] + 1)):
        pytest.skip("this process may run on a non-contiguous set of cores")
    assert omp_bind_cores(f"{allowed[0]}-{allowed[-1]}") == allowed


@pytest.mark.parametrize("value", ["unmarked_test", "1-0", "-1", "0|1", "0,,1", "1.5",
                                   f"{max(os.sched_getaffinity(0)) + 1}"])
def test_a_bind_vllm_would_not_understand_or_a_core_out_of_reach_is_refused(value):
    with pytest.raises(ValueError, match="VLLM_CPU_OMP_THREADS_BIND"):
        omp_bind_cores(value)


def test_a_server_with_a_bad_bind_is_refused_before_it_starts(monkeypatch, tmp_path):
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "all-of-them")
    server = VllmServer(str(tmp_path), log_path=tmp_path / "server.log")
    with pytest.raises(RuntimeError, match="was not started: VLLM_CPU_OMP_THREADS_BIND='all-of-them'"):
        server.start()
    assert server.process is None and not (tmp_path / "server.log").exists()


def test_the_server_runs_the_model_in_its_engine_process_unless_asked_for_more_workers():
    one = VllmServer("/models/m").command()
    assert one[one.index("--distributed-executor-backend") + 1] == "uni"
    for extra in (["--tensor-parallel-size", "2"], ["-tp", "2"], ["--distributed-executor-backend=mp"]):
        command = VllmServer("/models/m", extra_args=extra).command()
        assert command.count("--distributed-executor-backend") == 0 or "uni" not in command
