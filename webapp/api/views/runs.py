"""REST resources of the runs app (webapp/runs/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from rest_framework import mixins

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    Cancellable,
    ReadOnly,
    documented,
    in_project,
)
from webapp.endpoints.models import ModelEndpoint
from webapp.reviews.blind import request_blindness
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.runs import services as run_services
from webapp.runs.models import Checkpoint, TrainingMetric, TrainingRun
from webapp.tasks.models import Task


@documented(filters=(Filter("task", "task_id"), Filter("status", "status", str)),
            create=s.TrainingRunCreateSerializer)
class TrainingRunViewSet(Cancellable, mixins.CreateModelMixin, ReadOnly):
    """Creating a run validates the config, the rubric and the calibration gate, then queues it on `train`. A 400
    lists every problem in `errors` ({field, message}). Cancel stops it; metrics and checkpoints stay."""

    queryset = TrainingRun.objects.none()
    serializer_class = s.TrainingRunSerializer

    def perform_cancel(self, job):
        run_services.training_run_cancel(run=job)

    def scoped(self, project):
        return TrainingRun.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        project = request.project
        run = run_services.training_run_create(
            project=project, name=data["name"], preset=data["preset"], split=data["split"],
            task=in_project(Task.objects.filter(project=project), data["task"], "task", "task"),
            rubric_version=in_project(rubric_versions_of_project(project),
                                      data["rubric_version"], "rubric_version", "rubric version"),
            judge_endpoint=in_project(ModelEndpoint.objects.filter(project=project), data["judge_endpoint"],
                                      "judge_endpoint", "endpoint"),
            base_model=data["base_model"], options=data["options"],
            calibration_override=data["calibration_override"], calibration_note=data["calibration_note"],
            created_by=request.user,
        )
        return self.created(run)


@documented(filters=(Filter("run", "run_id"), Filter("step_min", "step__gte"), Filter("step_max", "step__lte")))
class TrainingMetricViewSet(ReadOnly):
    queryset = TrainingMetric.objects.none()
    serializer_class = s.TrainingMetricSerializer

    def scoped(self, project):
        request_blindness(self.request).check_scores_page()  # metrics carry the runs' rewards
        return TrainingMetric.objects.filter(run__project=project)


@documented(filters=(Filter("run", "run_id"),))
class CheckpointViewSet(ReadOnly):
    queryset = Checkpoint.objects.none()
    serializer_class = s.CheckpointSerializer

    def scoped(self, project):
        return Checkpoint.objects.filter(run__project=project)
