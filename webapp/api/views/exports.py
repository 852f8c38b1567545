"""REST resources of the exports app (webapp/exports/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    Cancellable,
    Deletable,
    ReadOnly,
    documented,
)
from webapp.exports import services as export_services
from webapp.exports.hub import hub_push_create
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
        return Export.objects.filter(project=project).prefetch_related("hub_pushes")

    @extend_schema(request=s.HubPushCreateSerializer, responses={202: s.HubPushSerializer})
    @action(detail=True, methods=["post"])
    def push(self, request, *args, **kwargs):
        """Push the export's file to the Hugging Face Hub as a dataset repo with a generated dataset card (a
        background job: poll the export, whose `hub_pushes` show the push's status, error and commit URL)."""
        request_blindness(request).check_scores_page()  # the pushed file carries judge scores and rewards
        export = self.get_object()
        data = self.parse(s.HubPushCreateSerializer)
        push = hub_push_create(export=export, repo_id=data["repo_id"], token_env=data["token_env"],
                               private=data["private"], created_by=request.user)
        return Response(s.HubPushSerializer(push).data, status=status.HTTP_202_ACCEPTED)

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
