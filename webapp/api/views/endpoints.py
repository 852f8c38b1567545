"""REST resources of the endpoints app (webapp/endpoints/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from rest_framework import mixins
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.api.views.base import (
    Deletable,
    ReadOnly,
    Updatable,
    documented,
)
from webapp.endpoints import services as endpoint_services
from webapp.endpoints.models import ModelEndpoint
from webapp.endpoints.services import ENDPOINT_EDITABLE


@documented(create=s.EndpointCreateSerializer, update=s.EndpointUpdateSerializer)
class EndpointViewSet(mixins.CreateModelMixin, Updatable, Deletable, ReadOnly):
    """Deleting an endpoint keeps the jobs and runs that used it (with their recorded model name)."""

    queryset = ModelEndpoint.objects.none()
    serializer_class = s.EndpointSerializer

    def perform_destroy(self, instance):
        endpoint_services.endpoint_delete(endpoint=instance)

    def scoped(self, project):
        return ModelEndpoint.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        return self.created(endpoint_services.endpoint_create(project=request.project, **self.parse()))

    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        row_version, values = self.merged(endpoint, s.EndpointUpdateSerializer, ENDPOINT_EDITABLE)
        return Response(self.get_serializer(endpoint_services.endpoint_update(
            endpoint=endpoint, row_version=row_version, **values)).data)
