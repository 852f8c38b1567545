from __future__ import annotations

import pytest
from pydantic import ValidationError

from training.grpo.config import PRESETS, GRPORunConfig, config_from_preset, to_trl_config

EXAMPLES = [{"prompt": "What is 2+2?", "answer": "4"}]


def test_generation_batch_must_hold_whole_groups_and_the_message_says_how_to_fix_it() -> None:
    with pytest.raises(ValidationError) as error:
        GRPORunConfig(
            examples=EXAMPLES, num_generations=8, per_device_train_batch_size=4, generation_batch_size=12
        )
    assert "generation_batch_size (12) must be divisible by num_generations (8)" in str(error.value)
    with pytest.raises(ValidationError) as error:
        GRPORunConfig(examples=EXAMPLES, num_generations=8, per_device_train_batch_size=6)
    message = str(error.value)
    assert "generation_batch_size (6) must be divisible by num_generations (8)" in message
    assert "per_device_train_batch_size (6)" in message  # says where the 6 came from


def test_generation_batch_must_split_into_device_batches() -> None:
    with pytest.raises(
        ValidationError, match=r"generation_batch_size \(10\) must be divisible by per_device"
    ):
        GRPORunConfig(
            examples=EXAMPLES, num_generations=2, per_device_train_batch_size=4, generation_batch_size=10
        )


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"num_generations": 1}, "num_generations"),
        ({"examples": []}, "examples"),
        ({"use_vllm": True, "use_cpu": True}, "use_vllm needs a GPU node"),
        ({"use_vllm": True, "vllm_mode": "server"}, "vllm_server_base_url"),
        ({"epsilon": 0.2, "epsilon_high": 0.1}, "epsilon_high (0.1) must be at least epsilon (0.2)"),
        ({"loss_type": "ppo"}, "loss_type"),
        ({"learning_rte": 1e-6}, "learning_rte"),  # a typo in stored JSON fails instead of being ignored
    ],
)
def test_invalid_values_are_refused(overrides: dict, fragment: str) -> None:
    values = {"examples": EXAMPLES, "num_generations": 2, "per_device_train_batch_size": 2, **overrides}
    with pytest.raises(ValidationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        GRPORunConfig.model_validate(values)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_validate_and_round_trip_through_json(name: str) -> None:
    config = config_from_preset(name, examples=EXAMPLES)  # type: ignore[arg-type]
    assert config.preset == name
    assert config.effective_generation_batch_size % config.num_generations == 0
    assert GRPORunConfig.model_validate_json(config.model_dump_json()) == config


def test_preset_overrides_win_and_unknown_presets_are_named() -> None:
    config = config_from_preset("cpu-smoke", examples=EXAMPLES, max_steps=5)
    assert config.max_steps == 5 and config.use_cpu
    with pytest.raises(ValueError, match="cpu-smoke, single-gpu, multi-gpu"):
        config_from_preset("tpu", examples=EXAMPLES)  # type: ignore[arg-type]


def test_every_field_has_help_text() -> None:
    missing = [name for name, info in GRPORunConfig.model_fields.items() if not info.description]
    assert missing == []


def test_trl_config_carries_our_values(tmp_path) -> None:
    config = GRPORunConfig(
        examples=EXAMPLES,
        num_generations=4,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_completion_length=64,
        learning_rate=3e-6,
        beta=0.01,
        loss_type="dr_grpo",
        scale_rewards="none",
        epsilon=0.25,
        epsilon_high=0.28,
        max_steps=7,
        save_steps=3,
        seed=123,
        use_cpu=True,
    )
    trl = to_trl_config(config, output_dir=tmp_path)
    assert (trl.num_generations, trl.per_device_train_batch_size, trl.gradient_accumulation_steps) == (
        4,
        4,
        2,
    )
    assert trl.generation_batch_size == 8 and trl.steps_per_generation == 2
    assert (trl.max_completion_length, trl.learning_rate, trl.beta) == (64, 3e-6, 0.01)
    assert (trl.loss_type, trl.scale_rewards, trl.epsilon, trl.epsilon_high) == (
        "dr_grpo",
        "none",
        0.25,
        0.28,
    )
    assert (trl.max_steps, trl.save_steps, trl.seed) == (7, 3, 123)
    assert trl.save_strategy == "steps"
    assert trl.report_to == []  # nothing reported to wandb & co: the sink is the only destination
    assert trl.use_vllm is False and trl.bf16 is False and trl.remove_unused_columns is False
    assert trl.output_dir == str(tmp_path)
    unsaved = to_trl_config(config.model_copy(update={"save_steps": None}), output_dir=tmp_path)
    assert unsaved.save_strategy == "no"
