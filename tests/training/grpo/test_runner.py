"""Real GRPO steps on a tiny model built from SmolLM2's config, in-process and as a separate OS process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.training.grpo.rewards import brevity, contains_answer
from tests.training.specs import arithmetic_spec
from training.grpo.config import GRPORunConfig, config_from_preset
from training.grpo.rewards import load_reward_refs, reward_name, rewards_from_config
from training.grpo.sinks import RunStatus, Sample, read_jsonl, read_status, request_stop

REPO = Path(__file__).resolve().parents[3]
RUBRIC = arithmetic_spec({"key": "short", "title": "At most 40 characters", "kind": "length", "weight": 0.25, "max": 40})
EXAMPLES = [
    {"prompt": f"What is {i} + {i}?", "answer": str(2 * i), "example_id": f"ex-{i}"} for i in range(4)
]


class ListSink:
    """Keeps what the run reports in memory: the in-process counterpart of JsonlSink."""

    def __init__(self, stop_after_step: int | None = None) -> None:
        self.metric_rows: list[tuple[int, dict[str, Any]]] = []
        self.sample_rows: list[tuple[int, list[Sample]]] = []
        self.checkpoints: list[tuple[int, str]] = []
        self.outcome: tuple[RunStatus, dict[str, Any]] | None = None
        self.stop_after_step = stop_after_step

    def metrics(self, step: int, values: dict[str, Any]) -> None:
        self.metric_rows.append((step, values))

    def samples(self, step: int, samples: list[Sample]) -> None:
        self.sample_rows.append((step, samples))

    def checkpoint(self, step: int, path: str) -> None:
        self.checkpoints.append((step, path))

    def should_stop(self) -> bool:
        return self.stop_after_step is not None and any(
            s >= self.stop_after_step for s, _ in self.metric_rows
        )

    def finished(self, status: RunStatus, detail: dict[str, Any]) -> None:
        self.outcome = (status, detail)


def _smoke_config(model: Path, **overrides: Any) -> GRPORunConfig:
    values: dict[str, Any] = {
        "model": str(model),
        "examples": EXAMPLES,
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "max_completion_length": 12,
        "max_steps": 2,
        **overrides,
    }
    return config_from_preset("cpu-smoke", **values)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    # One thread for the in-process runs too, restored afterwards so other tests keep torch's default.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_real_steps_report_metrics_samples_and_checkpoints(tiny_model_dir: Path, tmp_path: Path) -> None:
    from training.grpo.runner import run_grpo

    sink = ListSink()
    config = _smoke_config(tiny_model_dir, save_steps=2)
    result = run_grpo(config, [contains_answer, brevity], [1.0, 0.5], sink, output_dir=tmp_path / "out")

    assert result.status == "completed" and result.steps == 2
    assert sink.outcome is not None and sink.outcome[0] == "completed"
    assert [step for step, _ in sink.metric_rows] == [1, 2]
    for _, metrics in sink.metric_rows:
        for key in (
            "reward",
            "reward_std",
            "rewards/contains_answer/mean",
            "rewards/brevity/mean",
            "entropy",
            "clip_ratio/low_mean",
            "completions/mean_length",
            "frac_reward_zero_std",
            "step_time",
            "loss",
            "timing/step_s",
            "timing/generation_s",
            "timing/reward_s",
            "timing/update_s",
            "timing/reward/brevity_s",
            "timing/reward/contains_answer_s",
        ):
            assert metrics.get(key) is not None, key
        split = metrics["timing/generation_s"] + metrics["timing/reward_s"] + metrics["timing/update_s"]
        assert split == pytest.approx(metrics["timing/step_s"], rel=1e-6)
        assert metrics["timing/generation_s"] > 0

    # Every step's whole generation batch comes back, and its rewards are what the reward functions say about
    # exactly that text — and what TRL itself averaged into the step's metrics.
    assert [step for step, _ in sink.sample_rows] == [1, 2]
    metrics_by_step = dict(sink.metric_rows)
    for step, samples in sink.sample_rows:
        assert len(samples) == config.effective_generation_batch_size
        assert {s["sample_index"] for s in samples} == set(range(4))
        for sample in samples:
            example = next(e for e in EXAMPLES if e["example_id"] == sample["example_id"])
            assert sample["prompt"][-1]["content"] == example["prompt"]
            expected_brevity = brevity([sample["prompt"]], [sample["completion"]])[0]
            expected_answer = contains_answer(
                [sample["prompt"]], [sample["completion"]], answer=[example["answer"]]
            )[0]
            assert sample["rewards_per_criterion"]["brevity"] == pytest.approx(expected_brevity)
            assert sample["rewards_per_criterion"]["contains_answer"] == expected_answer
            assert sample["total"] == pytest.approx(1.0 * expected_answer + 0.5 * expected_brevity)
        mean_total = sum(s["total"] for s in samples) / len(samples)
        assert mean_total == pytest.approx(metrics_by_step[step]["reward"], abs=1e-5)
        mean_brevity = sum(s["rewards_per_criterion"]["brevity"] for s in samples) / len(samples)
        assert mean_brevity == pytest.approx(metrics_by_step[step]["rewards/brevity/mean"], abs=1e-5)

    steps_and_paths = [(step, Path(path).name) for step, path in sink.checkpoints]
    assert steps_and_paths == [(2, "checkpoint-2"), (2, "final")]
    assert all((Path(path) / "config.json").is_file() for _, path in sink.checkpoints)


@pytest.mark.slow
def test_prompts_over_max_prompt_length_are_refused_before_training(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from training.grpo.runner import run_grpo

    sink = ListSink()
    config = _smoke_config(tiny_model_dir, max_prompt_length=8)
    with pytest.raises(
        ValueError, match=r"4 example\(s\) have prompts longer than max_prompt_length \(8 tokens\)"
    ):
        run_grpo(config, [brevity], None, sink, output_dir=tmp_path)
    assert sink.outcome is not None and sink.outcome[0] == "failed" and sink.metric_rows == []


def test_reward_weights_must_match_the_functions(tmp_path: Path) -> None:
    from training.grpo.runner import run_grpo

    config = GRPORunConfig(examples=EXAMPLES, num_generations=2, per_device_train_batch_size=2)
    with pytest.raises(ValueError, match="reward_weights has 1 values for 2 reward functions"):
        run_grpo(config, [brevity, contains_answer], [1.0], ListSink(), output_dir=tmp_path)


def _launch(config: GRPORunConfig, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    config_file = tmp_path / "config.json"
    config_file.write_text(config.model_dump_json(), encoding="utf-8")
    sink_dir = tmp_path / "sink"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training.grpo.run",
            "--config",
            str(config_file),
            "--sink-dir",
            str(sink_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # One torch thread: on a small shared CI box, thread oversubscription makes a step several times slower.
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"},
    )
    return process, sink_dir


@pytest.mark.slow
def test_separate_process_runs_from_json_and_stops_promptly_on_request(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = _smoke_config(
        tiny_model_dir,
        max_steps=50,
        max_completion_length=8,
        rubric=RUBRIC,  # rewards come from the rubric engine, as for a run launched from the UI
    )
    process, sink_dir = _launch(config, tmp_path)
    try:
        deadline = time.monotonic() + 240
        while len(read_jsonl(sink_dir / "metrics.jsonl")) < 1:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "no metrics within 240 s"
            time.sleep(0.2)
        # Time one step as the run itself measured it, then ask it to stop.
        step_seconds = read_jsonl(sink_dir / "metrics.jsonl")[-1]["metrics"]["timing/step_s"]
        requested = time.monotonic()
        request_stop(sink_dir)  # what the worker does on cancel; SIGTERM sets the same flag
        output, _ = process.communicate(timeout=120)
        stopped_after = time.monotonic() - requested
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output.decode()

    status = read_status(sink_dir)
    assert status is not None and status["status"] == "stopped"
    assert 1 <= status["steps"] < 50
    # The stop lands at the next check (end of the current step or before the next generation), then the final
    # model is saved: about one step plus saving, never the remaining steps.
    assert stopped_after < 2 * step_seconds + 15, (stopped_after, step_seconds)

    metrics = read_jsonl(sink_dir / "metrics.jsonl")
    assert [row["step"] for row in metrics] == list(range(1, status["steps"] + 1))
    assert all(row["metrics"]["rewards/format/mean"] is not None for row in metrics)
    samples = read_jsonl(sink_dir / "samples.jsonl")
    assert {row["step"] for row in samples} == set(range(1, status["steps"] + 1))
    funcs, _ = rewards_from_config(config)
    by_key = {reward_name(f): f for f in funcs}
    assert set(by_key) == {"correct", "format", "short"}
    for row in samples:
        # Each stored reward is what the rubric engine gives that exact completion.
        example = next(e for e in EXAMPLES if e["example_id"] == row["example_id"])
        for key, value in row["rewards_per_criterion"].items():
            assert by_key[key]([row["prompt"]], [row["completion"]], answer=[example["answer"]])[
                0
            ] == pytest.approx(value)
    checkpoints = read_jsonl(sink_dir / "checkpoints.jsonl")
    assert checkpoints[-1]["path"].endswith("final") and checkpoints[-1]["step"] == status["steps"]
    assert (Path(checkpoints[-1]["path"]) / "config.json").is_file()


def test_a_run_generating_with_transformers_loads_trl_without_vllm(tmp_path: Path) -> None:
    """TRL imports vLLM whenever it is installed; a run that does not generate with vLLM hides it (training.grpo.run),
    and TRL's trainer still imports. A run that generates with vLLM keeps it."""
    code = (
        "import json, sys; from training.grpo.config import GRPORunConfig; from training.grpo.run import "
        "hide_unused_imports; hide_unused_imports(GRPORunConfig.model_validate(json.loads(sys.argv[1]))); "
        "import training.grpo.runner; from trl import GRPOTrainer; "
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] == 'vllm' and sys.modules[m] is not None]))"
    )
    config = _smoke_config(tmp_path)
    result = subprocess.run([sys.executable, "-c", code, config.model_dump_json()], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[3])
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    kept = config.model_copy(update={"use_vllm": True, "use_cpu": False})
    assert kept.use_vllm
    from training.grpo.run import hide_unused_imports

    before = sys.modules.get("vllm", "absent")
    hide_unused_imports(kept)
    assert sys.modules.get("vllm", "absent") is before  # left as it was


def test_invalid_json_config_fails_fast_with_a_status(tmp_path: Path) -> None:
    config_file = tmp_path / "config.json"
    config_file.write_text(
        json.dumps({"examples": EXAMPLES, "num_generations": 8, "per_device_train_batch_size": 12})
    )
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.grpo.run",
            "--config",
            str(config_file),
            "--sink-dir",
            str(tmp_path / "s"),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=60,
    )
    assert completed.returncode == 2
    status = read_status(tmp_path / "s")
    assert status is not None and status["status"] == "failed"
    assert "generation_batch_size (12) must be divisible by num_generations (8)" in status["error"]
    assert time.monotonic() - started < 30  # rejected before torch is imported


def test_rewards_by_import_path_and_from_the_rubric() -> None:
    funcs, weights = load_reward_refs(
        GRPORunConfig(
            examples=EXAMPLES,
            num_generations=2,
            per_device_train_batch_size=2,
            rewards=[{"function": "tests.training.grpo.rewards:brevity", "weight": 0.5}],
        ).rewards
    )
    assert funcs == [brevity] and weights == [0.5]
    with pytest.raises(ValueError, match="'package.module:function'"):
        load_reward_refs(
            GRPORunConfig.model_validate(
                {
                    "examples": EXAMPLES,
                    "num_generations": 2,
                    "per_device_train_batch_size": 2,
                    "rewards": [{"function": "brevity"}],
                }
            ).rewards
        )

    config = GRPORunConfig(examples=EXAMPLES, num_generations=2, per_device_train_batch_size=2, rubric=RUBRIC)
    funcs, weights = rewards_from_config(config)
    assert [reward_name(f) for f in funcs] == ["correct", "format", "short"]
    assert sum(weights) == pytest.approx(1.0)
    # The reference answer scores full marks on every criterion.
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    reference = [{"role": "assistant", "content": "<answer>4</answer>"}]
    assert [f([prompt], [reference], answer=["4"])[0] for f in funcs] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="neither `rewards` nor a `rubric`"):
        rewards_from_config(config.model_copy(update={"rubric": None}))


def test_python_criteria_need_the_allowlist_the_app_passes_in() -> None:
    from training.rubrics.spec import SpecError

    rubric = {"criteria": [{"key": "mentions", "title": "Mentions the answer", "kind": "python",
                            "function": "tests.training.rubrics.reward_fixtures.mentions_reference"}]}
    refused = GRPORunConfig(examples=EXAMPLES, num_generations=2, per_device_train_batch_size=2, rubric=rubric)
    with pytest.raises(SpecError, match="allowlist"):
        rewards_from_config(refused)
    allowed = refused.model_copy(update={"python_allowlist": ["tests.training.rubrics.reward_fixtures.*"]})
    funcs, _ = rewards_from_config(allowed)
    prompt = [{"role": "user", "content": "What is 2 + 2?"}]
    assert funcs[0]([prompt], [[{"role": "assistant", "content": "It is 4"}]], answer=["4"]) == [1.0]
