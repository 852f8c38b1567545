"""REST resource of projects (webapp/core/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from rest_framework import mixins, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.core import selectors as core_selectors
from webapp.core import services as core_services
from webapp.core.models import Project
from webapp.core.permissions import ProjectRolePermission


class ProjectViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Projects the caller is a member of, with their role. Creating one makes the caller its owner."""

    queryset = Project.objects.none()  # for the schema; requests use get_queryset
    serializer_class = s.ProjectSerializer
    permission_classes = [IsAuthenticated, ProjectRolePermission]
    lookup_value_regex = "[0-9]{1,18}"

    def get_queryset(self):
        return core_selectors.projects_for_user(self.request.user).order_by("-id")

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = core_services.project_create(
            name=serializer.validated_data["name"], description=serializer.validated_data.get("description", ""),
            owner=request.user,
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=project.pk)).data, status=201)
