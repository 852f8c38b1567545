"""transformers backend: batched `model.generate` with left padding, the fallback where vLLM is missing.

Slow (the bundled 135M model does ~50 tok/s at batch 8 on 2 CPU cores) but needs nothing beyond
torch + transformers. Conversations are rendered with the chat template, left-padded, and generated in
chunks of `max_batch_size` sequences; `n` samples of one conversation are `num_return_sequences`.

Usage:
    backend = TransformersBackend("var/models/smollm2-135m-instruct")
    groups = backend.generate(conversations, SamplingParams(n=2, max_tokens=64, seed=0))
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.generation.backends.base import OnCompleted
from training.generation.backends.vllm_backend import check_model_dir
from training.generation.chat import assistant_message, render_prompt, template_renders_tool_calls
from training.generation.types import Completion, Conversation, FinishReason, GenerationError, SamplingParams
from training.models import MODEL_LOAD_LOCK


class TransformersBackend:
    """`GenerationBackend` on a Hugging Face causal LM, loaded lazily on the first `generate`."""

    name = "transformers"

    def __init__(
        self, model: str | Path, *, device: str = "cpu", dtype: str = "auto", max_batch_size: int = 8
    ) -> None:
        self.model_path = check_model_dir(model)
        self.device = device
        self.dtype = dtype
        self.max_batch_size = max_batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._renders_tool_calls = False

    def _load(self) -> None:
        # Two loads at once in one process (a checkpoint evaluation generates with the base model and the checkpoint in
        # parallel worker threads; a judge job may load beside them) break transformers: see MODEL_LOAD_LOCK.
        with MODEL_LOAD_LOCK:
            self._load_once()

    def _load_once(self) -> None:
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise GenerationError("The transformers backend needs torch and transformers installed.") from exc
        # float32 on CPU: bfloat16 matmuls are slow or missing on many CPUs.
        dtype = torch.float32 if self.dtype == "auto" and self.device == "cpu" else self.dtype
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, padding_side="left")
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=dtype).to(self.device)  # type: ignore[arg-type]  # transformers types .to() as bound to a PreTrainedModel
        except Exception as exc:
            raise GenerationError(f"transformers could not load {self.model_path}: {exc}") from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        self._renders_tool_calls = template_renders_tool_calls(tokenizer)

    @property
    def max_model_len(self) -> int:
        self._load()
        return int(getattr(self._model.config, "max_position_embeddings", 2048))

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        on_completed: OnCompleted | None = None,
    ) -> list[list[Completion]]:
        self._load()
        results: list[list[Completion] | None] = [None] * len(conversations)
        ready: list[tuple[int, list[int]]] = []
        for index, conversation in enumerate(conversations):
            try:
                text = render_prompt(self._tokenizer, conversation, tools)
                ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
            except Exception as exc:
                results[index] = [
                    Completion.failed(f"chat template error: {exc}", "template") for _ in range(params.n)
                ]
                continue
            if len(ids) >= self.max_model_len:
                error = (
                    f"context overflow: the prompt is {len(ids)} tokens and the model's context is "
                    f"{self.max_model_len} tokens"
                )
                results[index] = [
                    Completion.failed(error, "context_overflow", prompt_tokens=len(ids))
                    for _ in range(params.n)
                ]
                continue
            ready.append((index, ids))

        # Whole conversations per chunk, so the n samples of one prompt stay in one generate call.
        per_chunk = max(1, self.max_batch_size // params.n)
        for start in range(0, len(ready), per_chunk):
            chunk = ready[start : start + per_chunk]
            try:
                for (index, _), completions in zip(
                    chunk, self._generate_chunk(chunk, params, tools), strict=True
                ):
                    results[index] = completions
                    if on_completed is not None:
                        on_completed(len(completions))
            except Exception:
                # One bad item must not sink its neighbours: retry them one by one.
                for item in chunk:
                    started = time.perf_counter()
                    try:
                        results[item[0]] = self._generate_chunk([item], params, tools)[0]
                    except Exception as exc:
                        latency_ms = (time.perf_counter() - started) * 1000
                        results[item[0]] = [
                            Completion.failed(
                                f"generation failed: {exc}",
                                "backend",
                                prompt_tokens=len(item[1]),
                                latency_ms=latency_ms,
                            )
                            for _ in range(params.n)
                        ]
                    if on_completed is not None:
                        on_completed(len(results[item[0]] or []))
        return [r if r is not None else [] for r in results]

    def _generate_chunk(
        self,
        chunk: list[tuple[int, list[int]]],
        params: SamplingParams,
        tools: Sequence[dict[str, Any]] | None,
    ) -> list[list[Completion]]:
        import torch

        tokenizer, model = self._tokenizer, self._model
        batch = tokenizer.pad({"input_ids": [ids for _, ids in chunk]}, return_tensors="pt").to(self.device)
        sampling = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": min(params.max_tokens, self.max_model_len - batch["input_ids"].shape[1]),
            "do_sample": sampling,
            "num_return_sequences": params.n,
            "pad_token_id": tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_scores": params.logprobs,
        }
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or 0)
            if params.min_p > 0:
                kwargs["min_p"] = params.min_p
        else:
            # The model's generation_config may carry sampling defaults that greedy decoding warns about.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=tokenizer)
        if params.seed is not None:
            torch.manual_seed(params.seed)

        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**batch, **kwargs)
        latency_ms = (time.perf_counter() - started) * 1000

        prompt_width = batch["input_ids"].shape[1]
        generated = out.sequences[:, prompt_width:]
        token_logprobs = None
        if params.logprobs:
            token_logprobs = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        eos_ids = _eos_ids(model, tokenizer)

        groups: list[list[Completion]] = []
        for row, (_, prompt_ids) in enumerate(chunk):
            completions = []
            for sample in range(params.n):
                flat = row * params.n + sample
                ids = generated[flat].tolist()
                length, finish = _completion_length(ids, eos_ids, tokenizer.pad_token_id)
                text = tokenizer.decode(ids[:length], skip_special_tokens=True)
                if params.stop:
                    text, stopped = _cut_at_stop(text, params.stop)
                    finish = "stop" if stopped else finish
                message = assistant_message(
                    text, tools_offered=bool(tools), template_renders_tool_calls=self._renders_tool_calls
                )
                if message.get("tool_calls"):
                    finish = "tool_calls"
                completions.append(
                    Completion(
                        text=text,
                        message=message,
                        prompt_tokens=len(prompt_ids),
                        completion_tokens=length,
                        finish_reason=finish,
                        latency_ms=latency_ms,
                        logprobs=token_logprobs[flat, :length].tolist()
                        if token_logprobs is not None
                        else None,
                    )
                )
            groups.append(completions)
        return groups

    def close(self) -> None:
        self._model = None
        self._tokenizer = None


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids) if isinstance(ids, list) else ({ids} if ids is not None else set())
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return found


def _completion_length(ids: list[int], eos_ids: set[int], pad_id: int | None) -> tuple[int, FinishReason]:
    """Tokens generated (counting the end-of-turn token, as vLLM does) and why generation ended."""
    for position, token in enumerate(ids):
        if token in eos_ids:
            return position + 1, "stop"
        if token == pad_id:  # padding after a sequence that finished without a recognised eos (stop string)
            return position, "stop"
    return len(ids), "length"


def _cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    # transformers keeps the stop string in the output; OpenAI and vLLM drop it.
    cut = min((text.find(s) for s in stop if s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
