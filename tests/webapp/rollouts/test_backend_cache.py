"""Worker-side backend cache: a worker keeps one local vLLM engine or served model at a time (each reserves most of
the accelerator's memory)."""

from __future__ import annotations

import os

import pytest

from training.generation import SamplingParams
from training.generation.backends.base import BackendConfig
from training.generation.backends.vllm_backend import VLLMBackend
from webapp.rollouts import engines as generation

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.mark.vllm_engine
@pytest.mark.slow
@pytest.mark.django_db
def test_local_engines_and_a_served_model_take_turns_one_at_a_time(bundled_model_dir, tmp_path):
    """One walk through every hand-over (each vLLM start costs ~30 CPU s on CPU, so they are not repeated per case):
    an engine is cached across chunks; a second local model closes the first engine before it starts; a local
    endpoint's model served over HTTP (verifiers-backed tasks) is a vLLM engine too, so the worker closes its
    in-process engines before serving, keeps the server for the next chunk, and stops it before an engine starts."""
    pytest.importorskip("vllm")
    import httpx

    from tests.factories import EndpointFactory
    from webapp.endpoints.models import EndpointKind

    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.symlink_to(bundled_model_dir)  # another model directory, as a run's checkpoint would be
    base = BackendConfig(kind="vllm", model=str(bundled_model_dir), enforce_eager=True)
    other = BackendConfig(kind="vllm", model=str(checkpoint), enforce_eager=True)
    endpoint = EndpointFactory(kind=EndpointKind.VLLM, base_url="", model="bundled")
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

        with generation.served_model(endpoint) as server:
            assert second._llm is None and not generation._backends  # closed before the server started
            reply = httpx.post(f"{server.base_url}/chat/completions", timeout=120, json={
                "model": server.model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
            assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"
        with generation.served_model(endpoint) as again:
            assert again is server and server.running  # kept for the job's next chunk
        with generation.backend_in_use(base) as third:
            assert not server.running and not generation._servers  # stopped before the engine started
            [[completion]] = third.generate([[{"role": "user", "content": "Hi"}]], params)
            assert completion.ok
    finally:
        generation.backends_close_all()
