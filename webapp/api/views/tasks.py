"""REST resources of the tasks app (webapp/tasks/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    Deletable,
    ReadOnly,
    Updatable,
    documented,
)
from webapp.core.errors import ApplicationError
from webapp.exports.sources import reasoning_gym_import
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.tasks import services as task_services
from webapp.tasks.models import Example, Task


@documented(create=s.TaskCreateSerializer, update=s.TaskUpdateSerializer)
class TaskViewSet(mixins.CreateModelMixin, Updatable, Deletable, ReadOnly):
    """A task with rollouts or training runs cannot be deleted (409): that would take their scores and labels."""

    queryset = Task.objects.none()
    serializer_class = s.TaskSerializer

    def perform_destroy(self, instance):
        task_services.task_delete(task=instance)

    def scoped(self, project):
        return Task.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        task = task_services.task_create(project=request.project, created_by=request.user, **self.parse())
        return self.created(task)

    @extend_schema(request=s.VerifiersTaskSerializer, responses={201: s.TaskSerializer})
    @action(detail=False, methods=["post"], url_path="verifiers")
    def verifiers(self, request, *args, **kwargs):
        """A task backed by a verifiers 0.4 taskset (and harness): its first `count` tasks become examples, and a
        generation job on it runs verifiers' own episode loop against an OpenAI-compatible endpoint."""
        data = self.parse(s.VerifiersTaskSerializer)
        task = verifiers_task_create(project=request.project, name=data["name"], taskset=data["taskset"],
                                     harness=data["harness"] or None, count=data["count"],
                                     max_turns=data["max_turns"], created_by=request.user)
        return self.created(task)

    @extend_schema(request=s.ReasoningGymImportSerializer, responses={201: s.ReasoningGymImportResultSerializer})
    @action(detail=False, methods=["post"], url_path="reasoning-gym")
    def reasoning_gym(self, request, *args, **kwargs):
        """Generate a task from a reasoning-gym dataset (and a rubric scoring with its score_answer)."""
        data = self.parse(s.ReasoningGymImportSerializer)
        result = reasoning_gym_import(project=request.project, user=request.user, **data)
        version = result.rubric.versions.order_by("-number").first() if result.rubric else None
        return Response({"task": result.task.pk, "examples": result.examples,
                         "rubric": result.rubric.pk if result.rubric else None,
                         "rubric_version": version.pk if version else None}, status=status.HTTP_201_CREATED)

    def partial_update(self, request, *args, **kwargs):
        task = self.get_object()
        row_version, values = self.merged(task, s.TaskUpdateSerializer, task_services.TASK_EDITABLE)
        return Response(self.get_serializer(task_services.task_update(task=task, row_version=row_version,
                                                                      **values)).data)


@documented(
    filters=(Filter("task", "task_id"), Filter("split", "split", str, "train or eval")),
    create=s.ExampleCreateSerializer,
    update=s.ExampleUpdateSerializer,
)
class ExampleViewSet(mixins.CreateModelMixin, Updatable, Deletable, ReadOnly):
    queryset = Example.objects.none()
    serializer_class = s.ExampleSerializer

    def perform_destroy(self, instance):
        task_services.example_delete(example=instance)

    def scoped(self, project):
        return Example.objects.filter(task__project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        task = Task.objects.filter(project=request.project, pk=data.pop("task")).first()
        if task is None:
            raise ApplicationError("No such task in this project.", field="task")
        task_services.examples_add(task=task, examples=[task_services.ExampleData(**data)])
        return self.created(task.examples.get(external_id=data["external_id"]))

    def partial_update(self, request, *args, **kwargs):
        example = self.get_object()
        row_version, values = self.merged(example, s.ExampleUpdateSerializer, ("prompt", "answer", "split", "info"))
        return Response(self.get_serializer(task_services.example_update(example=example, row_version=row_version,
                                                                         **values)).data)
