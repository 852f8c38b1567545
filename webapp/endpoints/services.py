from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from training.models import ModelError, model_path_check, resolve_model
from training.outbound import ENV_NAME_RE, OutboundRefused, key_var_check, url_host_check
from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_expire_if_stale, job_fail, job_finish, job_start
from webapp.core.locking import row_version_update
from webapp.core.models import JobStatus, Project
from webapp.core.paths import run_dir
from webapp.endpoints.models import EndpointCheck, EndpointKind, ModelEndpoint

ENDPOINT_EDITABLE = ("name", "kind", "base_url", "model", "api_key_env", "default_params", "max_concurrency",
                     "requests_per_minute", "tokens_per_minute", "supports_structured_output")
PING_MESSAGES = [{"role": "user", "content": "Reply with one word: pong"}]
PING_MAX_TOKENS = 16


def allowed_key_vars() -> tuple[str, ...]:
    """The operator's allow-patterns for `api_key_env` (RUBRICON_ENDPOINT_KEY_VARS), shown on the endpoint form."""
    return tuple(settings.RUBRICON_ENDPOINT_KEY_VARS)


def allowed_hosts() -> tuple[str, ...]:
    """The operator's list of hosts/CIDRs endpoints may call (RUBRICON_ENDPOINT_HOSTS); empty = any host."""
    return tuple(settings.RUBRICON_ENDPOINT_HOSTS)


def _refused(error: OutboundRefused | ModelError, field: str | None = None) -> ApplicationError:
    return ApplicationError(str(error), field=field or getattr(error, "field", None))


def api_key_env_check(value: str) -> str:
    value = value.strip()
    if not value:
        return value
    if not ENV_NAME_RE.match(value):
        looks_like_a_key = value.lower().startswith(("sk-", "sk_", "bearer ")) or (
            len(value) >= 20 and any(c.islower() for c in value) and any(c.isdigit() for c in value))
        if looks_like_a_key:
            raise ApplicationError(
                "This looks like an API key, not the name of a variable. Never paste keys here: set the key as an "
                "environment variable where the workers run (e.g. OPENAI_API_KEY=...) and enter that name.",
                field="api_key_env")
        raise ApplicationError(
            "Enter the name of an environment variable: capital letters, digits and _ (e.g. OPENAI_API_KEY).",
            field="api_key_env")
    try:
        key_var_check(value, allowed=allowed_key_vars())
    except OutboundRefused as error:
        raise _refused(error) from None
    return value


def base_url_check(value: str) -> None:
    try:
        url_host_check(value, allowed_hosts=allowed_hosts())
    except OutboundRefused as error:
        raise _refused(error) from None


def model_roots(project: Project) -> list[Path]:
    """Directories a project's members may name as a local model: the models directory, the operator's shared model
    directories, this project's run directories and the checkpoints its runs recorded."""
    roots = [Path(settings.MODELS_DIR), *(Path(d) for d in settings.RUBRICON_MODEL_DIRS)]
    if project.pk:
        roots += [run_dir(run_id) for run_id in project.training_runs.values_list("pk", flat=True)]
        paths = project.training_runs.filter(checkpoints__isnull=False).values_list("checkpoints__path", flat=True)
        roots += [Path(p) for p in paths if p and Path(p).is_absolute()]  # never "" (= the working directory)
    return roots


def model_check(*, project: Project, model: str, field: str = "model") -> None:
    """Refuse a filesystem path outside the project's model roots (hub ids and 'bundled' pass)."""
    try:
        model_path_check(model, allowed_roots=model_roots(project))
    except ModelError as error:
        raise _refused(error, field) from None


def endpoint_model_resolve(*, endpoint: ModelEndpoint, model: str | None = None) -> str:
    """What a worker loads for a local endpoint, checked against the project's roots at the moment of loading."""
    try:
        return resolve_model(model or endpoint.model, models_dir=settings.MODELS_DIR,
                             allowed_roots=model_roots(endpoint.project))
    except ModelError as error:
        raise _refused(error, "model") from None


@dataclass(frozen=True)
class OutboundTarget:
    """Where an endpoint's calls go and with which key, after the operator's rules were checked."""

    base_url: str
    api_key: str | None
    allowed_hosts: tuple[str, ...]


def endpoint_outbound(endpoint: ModelEndpoint) -> OutboundTarget:
    """The one place the web app reads an endpoint's API key (never stored: looked up at call time by name).

    The rules are checked again here, not only when the row is saved: a row written before an operator tightened
    them (or before they existed) must not send a secret anywhere either. The client checks the host once more
    before it opens a connection."""
    base_url_check(endpoint.base_url)
    key = None
    if endpoint.api_key_env:
        api_key_env_check(endpoint.api_key_env)
        key = os.environ.get(endpoint.api_key_env) or None
    return OutboundTarget(base_url=endpoint.base_url, api_key=key, allowed_hosts=allowed_hosts())


def _endpoint_fields_check(
    *, project: Project, kind: str, base_url: str, model: str, api_key_env: str, default_params: dict[str, Any],
    max_concurrency: int,
) -> dict[str, Any]:
    if kind not in EndpointKind.values:
        raise ApplicationError(f"Unknown endpoint kind {kind!r}.", field="kind")
    base_url = (base_url or "").strip().rstrip("/")
    if kind == EndpointKind.OPENAI and not base_url:
        raise ApplicationError("An OpenAI-compatible endpoint needs a base URL, e.g. http://gpu-node:8000/v1.",
                               field="base_url")
    if base_url:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ApplicationError("Enter a base URL starting with http:// or https://, e.g. http://gpu-node:8000/v1.",
                                   field="base_url")
        base_url_check(base_url)
    model = (model or "").strip()
    if not model:
        raise ApplicationError("Give the model name (or “bundled” for the bundled SmolLM2 model).", field="model")
    if kind != EndpointKind.OPENAI:
        model_check(project=project, model=model)
    if not isinstance(default_params, dict):
        raise ApplicationError("Sampling defaults must be a JSON object, e.g. {\"temperature\": 0.7}.",
                               field="default_params")
    if not 1 <= max_concurrency <= 1024:
        raise ApplicationError("Max concurrency must be between 1 and 1024.", field="max_concurrency")
    return {"kind": kind, "base_url": base_url, "model": model, "api_key_env": api_key_env_check(api_key_env),
            "default_params": default_params, "max_concurrency": max_concurrency}


def _endpoint_name_check(project: Project, name: str, *, exclude_pk: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise ApplicationError("An endpoint needs a name.", field="name")
    if ModelEndpoint.objects.filter(project=project, name=name).exclude(pk__in=[] if exclude_pk is None else [exclude_pk]).exists():
        raise ApplicationError(f"An endpoint named {name!r} already exists in this project.", field="name")
    return name


@transaction.atomic
def endpoint_create(
    *, project: Project, name: str, kind: str, model: str, base_url: str = "", api_key_env: str = "",
    default_params: dict[str, Any] | None = None, max_concurrency: int = 8, requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None, supports_structured_output: bool = True,
) -> ModelEndpoint:
    name = _endpoint_name_check(project, name)
    values = _endpoint_fields_check(project=project, kind=kind, base_url=base_url, model=model,
                                    api_key_env=api_key_env, default_params={} if default_params is None else default_params,
                                    max_concurrency=max_concurrency)
    return ModelEndpoint.objects.create(
        project=project, name=name, requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute,
        supports_structured_output=supports_structured_output, **values,
    )


@transaction.atomic
def endpoint_update(
    *, endpoint: ModelEndpoint, row_version: int, name: str, kind: str, model: str, base_url: str,
    api_key_env: str, default_params: dict[str, Any], max_concurrency: int, requests_per_minute: int | None,
    tokens_per_minute: int | None, supports_structured_output: bool,
) -> ModelEndpoint:
    """Apply an edit made on `row_version`; if someone saved since, refuse with the current values."""
    name = _endpoint_name_check(endpoint.project, name, exclude_pk=endpoint.pk)
    values = _endpoint_fields_check(project=endpoint.project, kind=kind, base_url=base_url, model=model,
                                    api_key_env=api_key_env, default_params=default_params, max_concurrency=max_concurrency)
    values.update(name=name, requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute,
                  supports_structured_output=supports_structured_output)
    row_version_update(
        instance=endpoint, row_version=row_version, values=values, shown_fields=ENDPOINT_EDITABLE, noun="endpoint",
        duplicate_name_message=f"An endpoint named {name!r} already exists in this project.",
    )
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: ModelEndpoint) -> None:
    # Jobs and runs that used it keep their rows (SET_NULL) and their recorded model name.
    endpoint.delete()


# --- test connection ---------------------------------------------------------------------------------------------


@dataclass
class ConnectionCheck:
    """The outcome of one real call: `ok` with the reply and latency, or a message that says what to fix."""

    ok: bool
    message: str = ""
    reply: str = ""
    latency_ms: float | None = None
    load_s: float | None = None
    notes: list[str] = field(default_factory=list)


def _outbound(endpoint: ModelEndpoint, notes: list[str]) -> OutboundTarget:
    target = endpoint_outbound(endpoint)
    if endpoint.api_key_env and not target.api_key:
        notes.append(f"${endpoint.api_key_env} is not set where this worker runs; the call was made "
                     "without a key (set it in the environment of every worker).")
    return target


def _openai_message(reason: str, status: int | None, endpoint: ModelEndpoint, timeout_s: float) -> str:
    reason = re.sub(r"^gave up after \d+ attempts?: ", "", reason)
    if status in (401, 403):
        where = f"${endpoint.api_key_env}" if endpoint.api_key_env else "an API key variable (none is set)"
        return f"The server refused the credentials ({reason}). Check {where}."
    if status == 404:
        return f"Not found ({reason}). Check the base URL (it usually ends in /v1) and the model name."
    if "timed out" in reason:
        return f"No answer within {timeout_s:g} s. The server may be overloaded, or the address may be wrong."
    if status is None and "connect" in reason.lower():
        return (f"Could not connect to {endpoint.base_url} ({reason}). Is the server running and reachable from "
                "the web server?")
    if "malformed JSON" in reason or "no choices" in reason or "ServerDisconnected" in reason or "Payload" in reason:
        return f"The server answered, but not with an OpenAI chat completion: {reason}"
    return reason


def _check_openai(endpoint: ModelEndpoint, timeout_s: float) -> ConnectionCheck:
    from training.llm_client import ChatResult, LLMCallError, OpenAICompatibleClient

    notes: list[str] = []
    params = {**endpoint.default_params, "max_tokens": PING_MAX_TOKENS, "n": 1}
    params.pop("max_completion_tokens", None)

    try:
        target = _outbound(endpoint, notes)
    except ApplicationError as error:
        return ConnectionCheck(ok=False, message=error.message, notes=notes)

    async def ping() -> ChatResult:
        client = OpenAICompatibleClient(base_url=target.base_url, model=endpoint.model, api_key=target.api_key,
                                        max_concurrency=1, timeout_s=timeout_s, max_retries=0,
                                        allowed_hosts=target.allowed_hosts)
        async with client:
            return await client.chat(PING_MESSAGES, **params)

    try:
        result = asyncio.run(ping())
    except LLMCallError as exc:
        return ConnectionCheck(ok=False, message=_openai_message(exc.reason, exc.status, endpoint, timeout_s),
                               notes=notes)
    except Exception as exc:  # noqa: BLE001 - a bad URL or an odd server must show a message, never a 500
        return ConnectionCheck(ok=False, message=f"The call failed: {type(exc).__name__}: {exc}", notes=notes)
    reply = result.content if result.content is not None else str(result.message.get("tool_calls", ""))
    if result.finish_reason == "length":
        notes.append(f"The reply was cut at {PING_MAX_TOKENS} tokens, as intended for a test.")
    return ConnectionCheck(ok=True, reply=reply, latency_ms=result.latency_ms, notes=notes)


def _check_transformers(endpoint: ModelEndpoint) -> ConnectionCheck:
    try:
        import torch

        from training.models import load_causal_lm
    except ImportError as exc:
        return ConnectionCheck(ok=False, message=f"Local transformers models need the train extra on the "
                                                 f"rollout workers (pip install -e '.[train]'): {exc}.")
    started = time.perf_counter()
    try:
        model, tokenizer = load_causal_lm(endpoint_model_resolve(endpoint=endpoint))
    except ApplicationError as exc:
        return ConnectionCheck(ok=False, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - a missing or broken model is a message, not a 500
        return ConnectionCheck(ok=False, message=f"The model {endpoint.model!r} cannot be loaded: {exc}")
    load_s = time.perf_counter() - started
    try:
        inputs = tokenizer.apply_chat_template(PING_MESSAGES, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        started = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=PING_MAX_TOKENS, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id)
        latency_ms = (time.perf_counter() - started) * 1000
        reply = tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    except Exception as exc:  # noqa: BLE001
        return ConnectionCheck(ok=False, message=f"The model loaded but generation failed: {exc}", load_s=load_s)
    return ConnectionCheck(ok=True, reply=reply.strip(), latency_ms=latency_ms, load_s=load_s)


def endpoint_connection_check(*, endpoint: ModelEndpoint, timeout_s: float = 10.0) -> ConnectionCheck:
    """Make one real call with the endpoint's settings. Writes nothing."""
    if endpoint.kind == EndpointKind.OPENAI:
        return _check_openai(endpoint, timeout_s)
    if endpoint.kind == EndpointKind.TRANSFORMERS:
        return _check_transformers(endpoint)
    return ConnectionCheck(
        ok=False,
        message="A local vLLM engine starts inside a generation job on a GPU node, so a one-call test cannot "
                "start it. Start a small generation job to try it, or serve the model with `vllm serve` and add "
                "it as an OpenAI-compatible endpoint.")


@transaction.atomic
def endpoint_check_start(*, endpoint: ModelEndpoint, created_by: Any = None, enqueue: bool = True) -> EndpointCheck:
    """Queue one test call on a rollout worker (a local model takes 15–50 s to load: too long for a request)."""
    check = EndpointCheck.objects.create(endpoint=endpoint, created_by=created_by)
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.generation.endpoint_check", check_id=check.pk)
    return check


def endpoint_check_run(*, check_id: int) -> None:
    """Worker side: claim the pending check, make the call, store reply and latency (never the key)."""
    if not job_start(model=EndpointCheck, job_id=check_id, total=1):
        return
    check = EndpointCheck.objects.select_related("endpoint").get(pk=check_id)
    try:
        outcome = endpoint_connection_check(endpoint=check.endpoint)
    except Exception as exc:  # noqa: BLE001 - the page must show an answer, never spin forever
        outcome = ConnectionCheck(ok=False, message=f"The check failed: {type(exc).__name__}: {exc}")
    job_finish(
        model=EndpointCheck, job_id=check.pk, status=JobStatus.SUCCEEDED if outcome.ok else JobStatus.FAILED,
        error=outcome.message, done=1, failed_count=0 if outcome.ok else 1, reply=outcome.reply,
        latency_ms=outcome.latency_ms, load_s=outcome.load_s, notes=outcome.notes,
    )


def endpoint_check_expire_if_stale(check: EndpointCheck) -> EndpointCheck:
    """A check whose worker was killed stays pending/running; past the timeout it fails so the page stops polling."""
    timeout_s = settings.RUBRICON_TOOL_JOB_TIMEOUT_S
    job_expire_if_stale(check, timeout_s=timeout_s, error=f"No answer after {timeout_s / 60:g} minutes: no "
                               "worker serves the rollout queue, or the one running the check stopped.")
    return check


def endpoint_check_fail(*, check_id: int, error: str) -> None:
    job_fail(model=EndpointCheck, job_id=check_id, error=error[:4000])
