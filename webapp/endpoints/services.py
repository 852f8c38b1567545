from __future__ import annotations

from django.db import transaction

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.endpoints.models import EndpointKind, ModelEndpoint


@transaction.atomic
def endpoint_create(
    *, project: Project, name: str, kind: str, model: str, base_url: str = "", api_key_env: str = "",
    default_params: dict | None = None, max_concurrency: int = 8,
) -> ModelEndpoint:
    name = name.strip()
    if kind not in EndpointKind.values:
        raise ApplicationError(f"Unknown endpoint kind {kind!r}.", field="kind")
    if kind == EndpointKind.OPENAI and not base_url:
        raise ApplicationError("An OpenAI-compatible endpoint needs a base URL.", field="base_url")
    if ModelEndpoint.objects.filter(project=project, name=name).exists():
        raise ApplicationError(f"An endpoint named {name!r} already exists in this project.", field="name")
    return ModelEndpoint.objects.create(
        project=project, name=name, kind=kind, model=model, base_url=base_url, api_key_env=api_key_env,
        default_params=default_params or {}, max_concurrency=max_concurrency,
    )
