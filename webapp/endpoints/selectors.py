from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.endpoints.models import EndpointCheck, ModelEndpoint


def endpoint_list(project: Project) -> QuerySet[ModelEndpoint]:
    return project.endpoints.order_by("name")


def endpoint_get(project: Project, endpoint_id: int) -> ModelEndpoint:
    return get_object_or_404(ModelEndpoint, project=project, pk=endpoint_id)


def endpoint_check_get(endpoint: ModelEndpoint, check_id: int) -> EndpointCheck:
    return get_object_or_404(EndpointCheck, endpoint=endpoint, pk=check_id)


def endpoints_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "endpoints": ModelEndpoint.objects.filter(project=project).count(),
    }
