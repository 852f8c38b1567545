"""Worker-side backend cache: a worker keeps one local vLLM engine (each reserves most of the accelerator's memory)."""

from __future__ import annotations

import os

import pytest

from training.generation import SamplingParams
from training.generation.backends.base import BackendConfig
from training.generation.backends.vllm_backend import VLLMBackend
from webapp.rollouts import engines as generation

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.mark.vllm_engine
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


@pytest.mark.vllm_engine
@pytest.mark.slow
@pytest.mark.django_db
def test_a_served_model_and_an_in_process_engine_take_turns(bundled_model_dir):
    """A local endpoint's model served over HTTP (verifiers-backed tasks) is a vLLM engine too: the worker closes its
    in-process engines before serving, keeps the server for the next chunk, and stops it before an engine starts."""
    pytest.importorskip("vllm")
    import httpx

    from tests.factories import EndpointFactory
    from webapp.endpoints.models import EndpointKind

    endpoint = EndpointFactory(kind=EndpointKind.VLLM, base_url="", model="bundled")
    engine = BackendConfig(kind="vllm", model=str(bundled_model_dir), enforce_eager=True)
    params = SamplingParams(max_tokens=4, temperature=0.0)
    try:
        with generation.backend_in_use(engine) as first:
            [[completion]] = first.generate([[{"role": "user", "content": "Hi"}]], params)
            assert completion.ok
        with generation.served_model(endpoint) as server:
            assert first._llm is None and not generation._backends  # closed before the server started
            reply = httpx.post(f"{server.base_url}/chat/completions", timeout=120, json={
                "model": server.model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
            assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"
        with generation.served_model(endpoint) as again:
            assert again is server and server.running  # kept for the job's next chunk
        with generation.backend_in_use(engine) as second:
            assert not server.running and not generation._servers  # stopped before the engine started
            [[completion]] = second.generate([[{"role": "user", "content": "Hi"}]], params)
            assert completion.ok
    finally:
        generation.backends_close_all()
