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


@pytest.mark.slow
def test_loads_at_once_in_one_process_all_get_their_weights(bundled_model_dir: Path):
    """Found by a Celery worker's threads: a judge job loading the bundled judge beside a checkpoint evaluation loading
    the base model failed with "Cannot copy out of meta tensor" (transformers builds models on the meta device). Every
    kind of load in the code base, three rounds of all at once: none may fail or keep a meta tensor."""
    import threading

    from training.generation.backends.transformers_backend import TransformersBackend
    from training.judges.transformers_judge import TransformersJudge

    def backend():
        loaded = TransformersBackend(bundled_model_dir)
        loaded._load()
        return loaded._model

    def judge():
        loaded = TransformersJudge(model_path=bundled_model_dir)
        loaded._load()
        return loaded.model

    def causal_lm():
        return load_causal_lm(str(bundled_model_dir))[0]

    results: list[tuple[str, object]] = []
    for _ in range(3):
        start = threading.Barrier(3)

        def run(load, start=start):
            start.wait()
            try:
                model = load()
            except Exception as exc:  # noqa: BLE001 - the failure is what this test reports
                results.append((load.__name__, exc))
            else:
                meta = [name for name, parameter in model.named_parameters() if parameter.is_meta]
                results.append((load.__name__, f"meta: {meta[:3]}" if meta else "ok"))

        threads = [threading.Thread(target=run, args=(load,)) for load in (backend, judge, causal_lm)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert len(results) == 9 and all(outcome == "ok" for _, outcome in results), results
