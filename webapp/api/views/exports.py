"""REST resources of the exports app (webapp/exports/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    Cancellable,
    Deletable,
    ReadOnly,
    documented,
)
from webapp.exports import services as export_services
from webapp.exports.models import Export
from webapp.reviews.blind import request_blindness


@documented(filters=(Filter("kind", "kind", str), Filter("status", "status", str)), create=s.ExportCreateSerializer)
class ExportViewSet(Cancellable, mixins.CreateModelMixin, Deletable, ReadOnly):
    """Exports run as a background job; poll the export until `status` is succeeded, then follow download_url.
    Cancel stops a pending or running export (its partial file is removed); delete removes the export and file."""

    queryset = Export.objects.none()
    serializer_class = s.ExportSerializer

    def perform_cancel(self, job):
        export_services.export_cancel(export=job)

    def perform_destroy(self, instance):
        export_services.export_delete(export=instance)

    def scoped(self, project):
        return Export.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        export = export_services.export_create(
            project=request.project, kind=data["kind"], format=data["format"], filters=data["filters"],
            created_by=request.user,
        )
        return self.created(export)

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def download(self, request, *args, **kwargs):
        request_blindness(request).check_scores_page()  # export files carry judge scores and rewards
        export = self.get_object()
        if not export.file:
            raise Http404("This export has no file (yet).")
        return FileResponse(export.file.open("rb"), as_attachment=True, filename=export_services.download_name(export))
