"""REST resources of the reviews app (webapp/reviews/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
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
from webapp.reviews import labeling
from webapp.reviews import selectors as review_selectors
from webapp.reviews import services as review_services
from webapp.reviews.models import GoldResponse, HumanLabel, RankingLabel, ReviewItem, ReviewQueue
from webapp.rubrics.selectors import rubric_versions_of_project


@documented(filters=(Filter("rubric_version", "rubric_version_id"),), create=s.ReviewQueueCreateSerializer)
class ReviewQueueViewSet(mixins.CreateModelMixin, ReadOnly):
    """Creating a queue samples `size` rollouts of the selection with the strategy and freezes them as its items.
    Its guidelines start from the newest ones written for its rubric unless given."""

    queryset = ReviewQueue.objects.none()
    serializer_class = s.ReviewQueueSerializer

    @property
    def write_action(self) -> Action:
        return Action.LABEL if self.action == "next_item" else Action.EDIT

    def scoped(self, project):
        return ReviewQueue.objects.filter(project=project)

    @extend_schema(methods=["GET"], request=None, responses=s.GuidelinesSerializer)
    @extend_schema(methods=["PUT"], request=s.GuidelinesUpdateSerializer, responses=s.GuidelinesSerializer)
    @action(detail=True, methods=["get", "put"])
    def guidelines(self, request, *args, **kwargs):
        """The queue's labeling guidelines (markdown, and as annotators see them); PUT replaces them (editors), marked
        as written for the queue's rubric version."""
        queue = self.get_object()
        if request.method == "PUT":
            data = self.parse(s.GuidelinesUpdateSerializer)
            queue = labeling.guidelines_save(queue=queue, text=data["guidelines"], user=request.user)
        return Response(s.GuidelinesSerializer(queue).data)

    @extend_schema(request=None, responses={200: s.ReviewItemSerializer,
                                            204: OpenApiResponse(description="Nothing left for you in this queue.")})
    @action(detail=True, methods=["post"], url_path="next", url_name="next")
    def next_item(self, request, *args, **kwargs):
        """Reserve the item you should label now (your live reservation first), as the labeling page does."""
        queue = review_selectors.queue_get(request.project, int(kwargs["pk"]))
        item = review_services.item_next(queue=queue, annotator=request.user)
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(s.ReviewItemSerializer(item).data)

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
    others_hidden = {"rollout_field": "rollout_id"}
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


@documented(filters=(Filter("queue", "queue_id"), Filter("rollout", "rollout_id")))
class ReviewItemViewSet(ReadOnly):
    """The items of the project's queues: the rollouts each shows (a pair, or a group to rank)."""

    queryset = ReviewItem.objects.none()
    serializer_class = s.ReviewItemSerializer

    def scoped(self, project):
        return ReviewItem.objects.filter(queue__project=project)


def held_item(request, pk: int) -> ReviewItem:
    """The review item `pk` of the project, if the caller holds a turn on it (as on the labeling page)."""
    project = request.project
    item = in_project(ReviewItem.objects.filter(queue__project=project), pk, "item", "review item")
    queue = review_selectors.queue_get(project, item.queue_id)
    return labeling.item_held(queue=queue, item_id=item.pk, annotator=request.user)


@documented(
    filters=(Filter("rollout", "rollout_id"), Filter("queue", "queue_id"), Filter("annotator", "annotator_id")),
    create=s.GoldResponseCreateSerializer,
    update=s.GoldResponseUpdateSerializer,
)
class GoldResponseViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, ReadOnly):
    """Corrected ("gold") responses written while labeling (exported as SFT data with filters.sft_source = gold).
    Writing needs the LABEL action and a turn on the item (POST review-queues/{id}/next/); an edit carries the
    row_version that was read, and a stale one answers 409 with the saved text."""

    queryset = GoldResponse.objects.none()
    serializer_class = s.GoldResponseSerializer
    write_action = Action.LABEL
    others_hidden = {"rollout_field": "rollout_id"}
    http_method_names = ["get", "post", "patch", "head", "options"]

    def scoped(self, project):
        return GoldResponse.objects.filter(rollout__project=project).select_related("annotator")

    @extend_schema(responses={201: s.GoldResponseSerializer,
                              409: OpenApiResponse(description="You already wrote another one for this rollout.")})
    def create(self, request, *args, **kwargs):
        data = self.parse()
        item = held_item(request, data["item"])
        gold = labeling.gold_save(item=item, rollout_id=data["rollout"] or item.rollout_id, annotator=request.user,
                                  text=data["text"], row_version=0)
        if gold is None:
            raise ValidationError({"text": "A gold response needs some text."})
        return self.created(gold)

    @extend_schema(responses={200: s.GoldResponseSerializer, 204: OpenApiResponse(description="Deleted (empty text)."),
                              409: OpenApiResponse(description="Stale row_version; `current` holds the saved text.")})
    def partial_update(self, request, *args, **kwargs):
        data = self.parse(s.GoldResponseUpdateSerializer)
        gold = labeling.gold_update(gold=self.get_object(), annotator=request.user, text=data["text"],
                                    row_version=data["row_version"])
        if gold is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(self.get_serializer(gold).data)


@documented(
    filters=(Filter("item", "item_id"), Filter("queue", "queue_id"), Filter("annotator", "annotator_id")),
    create=s.RankingLabelCreateSerializer,
    update=s.RankingLabelUpdateSerializer,
)
class RankingLabelViewSet(mixins.CreateModelMixin, mixins.UpdateModelMixin, ReadOnly):
    """Rankings of a group's responses, best first, in ranking-mode queues (exported as every implied preference
    pair with filters.preference_source = ranking). Submitting needs the LABEL action and a turn on the item, and
    closes it; every response of the group must be ranked once."""

    queryset = RankingLabel.objects.none()
    serializer_class = s.RankingLabelSerializer
    write_action = Action.LABEL
    others_hidden = {"rollout_field": None, "item_field": "item_id"}
    http_method_names = ["get", "post", "patch", "head", "options"]

    def scoped(self, project):
        return RankingLabel.objects.filter(item__queue__project=project).select_related("annotator")

    @extend_schema(responses={201: s.RankingLabelSerializer,
                              409: OpenApiResponse(description="You already ranked this group differently.")})
    def create(self, request, *args, **kwargs):
        data = self.parse()
        label = labeling.ranking_submit(item=held_item(request, data["item"]), annotator=request.user,
                                        ranking=data["ranking"], comment=data["comment"])
        return self.created(label)

    @extend_schema(responses={200: s.RankingLabelSerializer,
                              409: OpenApiResponse(description="Stale row_version; `current` holds the ranking.")})
    def partial_update(self, request, *args, **kwargs):
        data = self.parse(s.RankingLabelUpdateSerializer)
        label = labeling.ranking_update(label=self.get_object(), annotator=request.user, ranking=data["ranking"],
                                        row_version=data["row_version"], comment=data["comment"])
        return Response(self.get_serializer(label).data)
