"""From a task and a model endpoint to the objects training.generation runs (no ORM object crosses over).

Backends are cached per worker process: loading a model (or starting a vLLM engine, ~40 s on CPU) once per
worker, not once per chunk, is what keeps app-launched jobs as fast as a raw engine."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

from django.conf import settings

from training.generation import (
    BackendConfig,
    GenerationBackend,
    GenerationError,
    PromptTemplateError,
    SingleTurnEnvironment,
    ToolEnvironment,
    WordleEnvironment,
    create_backend,
)
from training.generation import Example as GenExample
from webapp.core.errors import ApplicationError
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.endpoints.services import endpoint_model_resolve, endpoint_outbound
from webapp.tasks.models import Example, Task, TaskKind

_backends: dict[str, GenerationBackend] = {}
_backends_lock = threading.Lock()
_vllm_lock = threading.Lock()

ENVIRONMENTS = {"wordle": WordleEnvironment, "tools": ToolEnvironment}


def backend_config(endpoint: ModelEndpoint, *, model_override: str | None = None) -> BackendConfig:
    model = model_override or endpoint.model
    if endpoint.kind == EndpointKind.OPENAI:
        target = endpoint_outbound(endpoint)
        return BackendConfig(kind=endpoint.kind, model=model, base_url=target.base_url, api_key=target.api_key,
                             allowed_hosts=target.allowed_hosts, max_concurrency=endpoint.max_concurrency,
                             requests_per_minute=endpoint.requests_per_minute,
                             tokens_per_minute=endpoint.tokens_per_minute)
    options = {
        EndpointKind.VLLM: {"enforce_eager": settings.RUBRICON_VLLM_ENFORCE_EAGER},
        EndpointKind.TRANSFORMERS: {"max_batch_size": settings.RUBRICON_TRANSFORMERS_BATCH_SIZE},
    }[endpoint.kind]
    return BackendConfig(kind=endpoint.kind, model=endpoint_model_resolve(endpoint=endpoint, model=model), **options)


def backend_for(config: BackendConfig) -> GenerationBackend:
    key = config.model_dump_json()
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            try:
                backend = _backends[key] = create_backend(config)
            except GenerationError as error:
                raise ApplicationError(f"Cannot start the model backend: {error}") from error
        return backend


def backends_close_all() -> None:
    """Close every cached backend: a vLLM engine core is a child process that would outlive a stopped worker."""
    with _backends_lock:
        backends = list(_backends.values())
        _backends.clear()
    for backend in backends:
        backend.close()


@contextlib.contextmanager
def backend_in_use(config: BackendConfig) -> Iterator[GenerationBackend]:
    """The cached backend for one piece of work (a chunk, a draft).

    A local vLLM engine reserves most of the accelerator's memory (gpu_memory_utilization), so a worker keeps one:
    work on local vLLM engines is serialized per process, and a different model's engine (a checkpoint being
    evaluated next to its base) closes the previous one first instead of failing with out-of-memory."""
    if config.kind != EndpointKind.VLLM:
        yield backend_for(config)
        return
    key = config.model_dump_json()
    with _vllm_lock:
        with _backends_lock:
            others = [k for k, b in _backends.items() if k != key and isinstance(b, _vllm_backend_class())]
            evicted = [_backends.pop(k) for k in others]
        for backend in evicted:
            backend.close()
        yield backend_for(config)


def _vllm_backend_class() -> type:
    from training.generation.backends.vllm_backend import VLLMBackend

    return VLLMBackend


def environment_factory(task: Task) -> functools.partial:
    """The environment each episode of this task plays; a broken prompt template fails here, before any work."""
    try:
        if task.kind == TaskKind.SINGLE_TURN:
            factory = functools.partial(
                SingleTurnEnvironment, system_prompt=task.system_prompt or None, prompt_template=task.prompt_template
            )
        else:
            environment = ENVIRONMENTS.get(task.environment)
            if environment is None:
                raise ApplicationError(
                    f"Unknown environment {task.environment!r}; choose one of {', '.join(ENVIRONMENTS)}.",
                    field="environment",
                )
            options = dict(task.environment_config or {})
            if environment is ToolEnvironment:
                options.setdefault("system_prompt", task.system_prompt or None)
                options.setdefault("prompt_template", task.prompt_template)
            factory = functools.partial(environment, **options)
        factory()  # construct once to surface template and option errors now
    except PromptTemplateError as error:
        raise ApplicationError(f"Prompt template error: {error}", field="prompt_template") from error
    except (TypeError, ValueError) as error:  # an unknown option, or a value the environment refuses
        raise ApplicationError(f"Bad environment options: {error}", field="environment_config") from error
    return factory


def generation_example(example: Example) -> GenExample:
    return GenExample(id=example.pk, prompt=example.prompt or None, messages=example.messages or None,
                      answer=example.answer or None, info=example.info or {})
