"""Resuming a GRPO run from a checkpoint (TRL `resume_from_checkpoint`), and the resumable checkpoint a stopped run
leaves, with real steps on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.training.grpo.rewards import brevity, contains_answer
from tests.training.grpo.test_runner import ListSink, _smoke_config, one_torch_thread  # noqa: F401


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_a_stopped_run_leaves_a_resumable_checkpoint_and_a_resumed_run_continues_the_step_count(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from training.grpo.runner import resume_step, run_grpo

    first = ListSink(stop_after_step=2)
    result = run_grpo(_smoke_config(tiny_model_dir, max_steps=50), [contains_answer, brevity], [1.0, 0.5], first,
                      output_dir=tmp_path / "first")
    assert result.status == "stopped" and result.steps == 2
    # The stop saves a full checkpoint (optimizer and trainer state) before the weights-only final model.
    assert [(step, Path(path).name) for step, path in first.checkpoints] == [(2, "checkpoint-2"), (2, "final")]
    checkpoint = tmp_path / "first" / "checkpoint-2"
    assert (checkpoint / "optimizer.pt").is_file() and resume_step(checkpoint) == 2

    second = ListSink()
    config = _smoke_config(tiny_model_dir, max_steps=4, resume_from_checkpoint=str(checkpoint))
    result = run_grpo(config, [contains_answer, brevity], [1.0, 0.5], second, output_dir=tmp_path / "second")
    assert result.status == "completed" and result.steps == 4
    assert [step for step, _ in second.metric_rows] == [3, 4]  # the step count goes on; steps 1-2 are not redone
    assert [step for step, _ in second.sample_rows] == [3, 4]
    assert second.checkpoints == [(4, str(tmp_path / "second" / "final"))]
    # The weights are the checkpoint's, trained on: the learning-rate schedule continued from step 2.
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert second.metric_rows[0][1]["learning_rate"] != first.metric_rows[0][1]["learning_rate"]


def test_a_final_model_or_a_deleted_checkpoint_cannot_be_resumed_and_the_run_says_why(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from training.grpo.runner import run_grpo

    sink = ListSink()
    config = _smoke_config(tiny_model_dir, resume_from_checkpoint=str(tiny_model_dir))
    with pytest.raises(ValueError, match="has no trainer_state.json. Resume from a checkpoint-N directory"):
        run_grpo(config, [brevity], None, sink, output_dir=tmp_path)
    assert sink.outcome is not None and sink.outcome[0] == "failed" and sink.outcome[1]["phase"] == "setup"
    config = _smoke_config(tiny_model_dir, resume_from_checkpoint=str(tmp_path / "checkpoint-9"))
    with pytest.raises(ValueError, match="it does not exist"):
        run_grpo(config, [brevity], None, ListSink(), output_dir=tmp_path)
