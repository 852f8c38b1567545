"""REST resources of the judging app (webapp/judging/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from rest_framework import mixins

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    ReadOnly,
    documented,
)
from webapp.core.errors import ApplicationError
from webapp.endpoints.models import ModelEndpoint
from webapp.judging import services as judging_services
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.reviews.blind import request_blindness
from webapp.rubrics.selectors import rubric_versions_of_project


@documented(filters=(Filter("rubric_version", "rubric_version_id"), Filter("status", "status", str)),
            create=s.JudgeJobCreateSerializer)
class JudgeJobViewSet(mixins.CreateModelMixin, ReadOnly):
    """Creating a judge job scores the rollouts matching `selection` in the background (queue `judge`)."""

    queryset = JudgeJob.objects.none()
    serializer_class = s.JudgeJobSerializer

    def scoped(self, project):
        return JudgeJob.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        version = rubric_versions_of_project(request.project).filter(pk=data["rubric_version"]).first()
        if version is None:
            raise ApplicationError("No such rubric version in this project.", field="rubric_version")
        endpoint = None
        if data["endpoint"] is not None:
            endpoint = ModelEndpoint.objects.filter(project=request.project, pk=data["endpoint"]).first()
            if endpoint is None:
                raise ApplicationError("No such endpoint in this project.", field="endpoint")
        job = judging_services.judge_job_create(project=request.project, rubric_version=version, endpoint=endpoint,
                                                selection=data["selection"], created_by=request.user)
        return self.created(job)


@documented(
    filters=(
        Filter("rollout", "rollout_id"), Filter("rubric_version", "rubric_version_id"), Filter("job", "job_id"),
        Filter("criterion_key", "criterion_key", str), Filter("score_min", "score__gte", float),
        Filter("score_max", "score__lte", float),
    )
)
class CriterionScoreViewSet(ReadOnly):
    queryset = CriterionScore.objects.none()
    serializer_class = s.CriterionScoreSerializer

    def scoped(self, project):
        # Blind review: an annotator does not see judge scores of items still waiting for their label.
        return request_blindness(self.request).without_scores_of(CriterionScore.objects.filter(rollout__project=project))


@documented(
    filters=(
        Filter("rollout", "rollout_id"), Filter("rubric_version", "rubric_version_id"), Filter("job", "job_id"),
        Filter("score_min", "total__gte", float), Filter("score_max", "total__lte", float),
    )
)
class RolloutScoreViewSet(ReadOnly):
    queryset = RolloutScore.objects.none()
    serializer_class = s.RolloutScoreSerializer

    def scoped(self, project):
        return request_blindness(self.request).without_scores_of(RolloutScore.objects.filter(rollout__project=project))
