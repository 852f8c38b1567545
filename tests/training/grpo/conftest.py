from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED_MODELS = "shared-models"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with SmolLM2's vocabulary and its real tokenizer: real GRPO steps in about a second."""
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    from training.models import ensure_bundled_model

    bundled = ensure_bundled_model(REPO / "var" / "models")
    config = AutoConfig.from_pretrained(bundled)
    config.num_hidden_layers = 2
    config.hidden_size = 64
    config.intermediate_size = 128
    config.num_attention_heads = 4
    config.num_key_value_heads = 2
    config.head_dim = 16
    # Under the shared models directory of the test session (tests/conftest.py: RUBRICON_MODEL_DIRS), so web tests
    # and workers may load it as any project's base model.
    target = tmp_path_factory.getbasetemp() / SHARED_MODELS / "tiny-smollm2"
    target.mkdir(parents=True, exist_ok=True)
    import torch

    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(bundled).save_pretrained(target)
    return target
