"""REST resources of the reviews app (webapp/reviews/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    ReadOnly,
    documented,
    in_project,
)
from webapp.core.errors import ApplicationError
from webapp.core.permissions import Action
from webapp.reviews import services as review_services
from webapp.reviews.models import HumanLabel, ReviewQueue
from webapp.rubrics.selectors import rubric_versions_of_project


@documented(filters=(Filter("rubric_version", "rubric_version_id"),), create=s.ReviewQueueCreateSerializer)
class ReviewQueueViewSet(mixins.CreateModelMixin, ReadOnly):
    """Creating a queue samples `size` rollouts of the selection with the strategy and freezes them as its items."""

    queryset = ReviewQueue.objects.none()
    serializer_class = s.ReviewQueueSerializer

    def scoped(self, project):
        return ReviewQueue.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        project = request.project
        version = in_project(rubric_versions_of_project(project),
                             data.pop("rubric_version"), "rubric_version", "rubric version")
        ids = data.pop("assignees")
        assignees = list(get_user_model().objects.filter(pk__in=ids, memberships__project=project))
        if len(assignees) != len(set(ids)):
            raise ApplicationError("Every assignee must be a member of the project.", field="assignees")
        queue = review_services.review_queue_create(project=project, rubric_version=version, assignees=assignees,
                                                    created_by=request.user, **data)
        return self.created(queue)


@documented(
    filters=(
        Filter("rollout", "rollout_id"), Filter("rubric_version", "rubric_version_id"), Filter("queue", "queue_id"),
        Filter("criterion_key", "criterion_key", str), Filter("annotator", "annotator_id"),
    ),
    create=s.HumanLabelCreateSerializer,
    update=s.HumanLabelUpdateSerializer,
)
class HumanLabelViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, ReadOnly):
    """Labels need the LABEL action (annotators and up). Updates carry the row_version that was read; a stale one
    answers 409 with the current label."""

    queryset = HumanLabel.objects.none()
    serializer_class = s.HumanLabelSerializer
    write_action = Action.LABEL
    http_method_names = ["get", "post", "patch", "head", "options"]

    def scoped(self, project):
        return HumanLabel.objects.filter(rollout__project=project).select_related("annotator")

    def create(self, request, *args, **kwargs):
        data = self.parse()
        label = review_services.label_create(
            project=request.project, annotator=request.user, rollout_id=data.pop("rollout"),
            rubric_version_id=data.pop("rubric_version"), **data,
        )
        return self.created(label)

    @extend_schema(responses={200: s.HumanLabelSerializer, 409: OpenApiResponse(description="Stale row_version")})
    def partial_update(self, request, *args, **kwargs):
        data = self.parse(s.HumanLabelUpdateSerializer)
        label = review_services.label_update(
            label=self.get_object(), annotator=request.user, row_version=data.pop("row_version"), **data
        )
        return Response(self.get_serializer(label).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)
