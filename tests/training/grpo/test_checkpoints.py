"""A LoRA run's checkpoint (adapters only) is loadable by the generation backends: merged into its base once."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.generation import SamplingParams
from training.generation.backends.transformers_backend import TransformersBackend


@pytest.mark.slow
def test_a_lora_checkpoint_is_merged_into_its_base_once_and_generates(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    with torch.no_grad():  # a trained adapter: B is no longer zero, so merging changes the weights
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    checkpoint = tmp_path / "checkpoint-3"
    model.save_pretrained(checkpoint)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(checkpoint)
    assert not (checkpoint / "config.json").exists()

    backend = TransformersBackend(checkpoint)
    merged = checkpoint / "merged"
    assert backend.model_path == merged and (merged / "config.json").is_file()
    [[completion]] = backend.generate([[{"role": "user", "content": "What is 2 + 2?"}]],
                                      SamplingParams(max_tokens=6, temperature=0.0))
    assert completion.ok and completion.completion_tokens > 0

    base = load_file(next(tiny_model_dir.glob("*.safetensors")))
    tuned = load_file(next(merged.glob("*.safetensors")))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(base[key], tuned[key])  # the adapter is in the weights
    stamp = (merged / "config.json").stat().st_mtime_ns
    assert TransformersBackend(checkpoint).model_path == merged
    assert (merged / "config.json").stat().st_mtime_ns == stamp  # merged once, reused after
