from __future__ import annotations

from django.db.models import QuerySet

from webapp.core.models import Project
from webapp.endpoints.models import ModelEndpoint


def endpoint_list(project: Project) -> QuerySet[ModelEndpoint]:
    return project.endpoints.order_by("name")
