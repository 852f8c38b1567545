from __future__ import annotations

from rest_framework import viewsets

from webapp.api.serializers import ProjectSerializer
from webapp.core import selectors
from webapp.core.models import Project
from webapp.core.permissions import ProjectRolePermission


class ProjectViewSet(viewsets.ReadOnlyModelViewSet):
    """Projects the caller is a member of, with their role."""

    queryset = Project.objects.none()  # for the schema; requests use get_queryset
    serializer_class = ProjectSerializer
    permission_classes = [ProjectRolePermission]

    def get_queryset(self):
        return selectors.projects_for_user(self.request.user).order_by("-id")
