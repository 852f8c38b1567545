from __future__ import annotations

from pathlib import Path

import pytest

from training.models import BUNDLED_MODEL_NAME, ModelError, bundled_gguf_path, load_causal_lm, resolve_model


def test_bundled_gguf_ships_in_the_package():
    path = bundled_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_resolve_model_explains_bad_input(tmp_path):
    with pytest.raises(ModelError, match="No model given"):
        resolve_model("  ", models_dir=tmp_path)
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path / "missing"), models_dir=tmp_path)
    assert resolve_model("Qwen/Qwen3-0.6B", models_dir=tmp_path) == "Qwen/Qwen3-0.6B"


@pytest.mark.slow
def test_bundled_model_is_converted_once_and_answers_a_chat(bundled_model_dir: Path):
    import torch

    assert bundled_model_dir.name == BUNDLED_MODEL_NAME
    assert (bundled_model_dir / "model.safetensors").is_file()
    config = (bundled_model_dir / "config.json").read_text()
    assert "quantization_config" not in config  # a plain checkpoint that vLLM and TRL load as-is
    assert resolve_model("bundled", models_dir=bundled_model_dir.parent) == str(bundled_model_dir)

    model, tokenizer = load_causal_lm(str(bundled_model_dir))
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    reply = tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply
