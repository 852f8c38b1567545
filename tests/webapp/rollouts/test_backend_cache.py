"""Worker-side backend cache: a worker keeps one local vLLM engine (each reserves most of the accelerator's memory)."""

from __future__ import annotations

import os

import pytest

from training.generation import SamplingParams
from training.generation.backends.base import BackendConfig
from training.generation.backends.vllm_backend import VLLMBackend
from webapp.rollouts import engines as generation

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def test_a_second_local_vllm_model_closes_the_first_engine(bundled_model_dir, tmp_path):
    pytest.importorskip("vllm")
    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.symlink_to(bundled_model_dir)  # another model directory, as a run's checkpoint would be
    base = BackendConfig(kind="vllm", model=str(bundled_model_dir), enforce_eager=True)
    other = BackendConfig(kind="vllm", model=str(checkpoint), enforce_eager=True)
    params = SamplingParams(max_tokens=4, temperature=0.0)
    try:
        with generation.backend_in_use(base) as first:
            [[completion]] = first.generate([[{"role": "user", "content": "Hi"}]], params)
            assert completion.ok
        with generation.backend_in_use(base) as again:
            assert again is first  # cached across chunks
        with generation.backend_in_use(other) as second:
            assert first._llm is None  # closed before the second engine started
            [[completion]] = second.generate([[{"role": "user", "content": "Hi"}]], params)
            assert completion.ok
        assert [b for b in generation._backends.values() if isinstance(b, VLLMBackend)] == [second]
    finally:
        for key, backend in list(generation._backends.items()):
            if isinstance(backend, VLLMBackend):
                backend.close()
                del generation._backends[key]
