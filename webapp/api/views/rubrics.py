"""REST resources of the rubrics app (webapp/rubrics/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from django.db.models import Max
from rest_framework import mixins

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    ReadOnly,
    documented,
)
from webapp.core.errors import ApplicationError
from webapp.rubrics import services as rubric_services
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.tasks.models import Task


@documented(filters=(Filter("task", "task_id"),), create=s.RubricCreateSerializer)
class RubricViewSet(mixins.CreateModelMixin, ReadOnly):
    queryset = Rubric.objects.none()
    serializer_class = s.RubricSerializer

    def scoped(self, project):
        return Rubric.objects.filter(project=project).annotate(latest_version=Max("versions__number"))

    def create(self, request, *args, **kwargs):
        data = self.parse()
        task = None
        if data["task"] is not None:
            task = Task.objects.filter(project=request.project, pk=data["task"]).first()
            if task is None:
                raise ApplicationError("No such task in this project.", field="task")
        rubric = rubric_services.rubric_create(
            project=request.project, name=data["name"], spec=data["spec"], author=request.user, task=task,
            description=data["description"], note=data["note"],
        )
        return self.created(self.get_queryset().get(pk=rubric.pk))


@documented(filters=(Filter("rubric", "rubric_id"),), create=s.RubricVersionCreateSerializer)
class RubricVersionViewSet(mixins.CreateModelMixin, ReadOnly):
    """Versions are immutable: create and read only."""

    queryset = RubricVersion.objects.none()
    serializer_class = s.RubricVersionSerializer

    def scoped(self, project):
        return RubricVersion.objects.filter(rubric__project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        rubric = Rubric.objects.filter(project=request.project, pk=data["rubric"]).first()
        if rubric is None:
            raise ApplicationError("No such rubric in this project.", field="rubric")
        version = rubric_services.rubric_version_create(
            rubric=rubric, spec=data["spec"], author=request.user, note=data["note"]
        )
        return self.created(version)
