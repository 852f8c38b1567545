"""REST resources of the rollouts app (webapp/rollouts/), on the shared base of webapp/api/views/base.py."""

from __future__ import annotations

import dataclasses

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.api.filters import Filter
from webapp.api.views.base import (
    Cancellable,
    ReadOnly,
    documented,
    in_project,
)
from webapp.endpoints.models import ModelEndpoint
from webapp.exports.import_datasets import dataset_import
from webapp.exports.selectors import AGREEMENTS, rollouts_by_agreement
from webapp.reviews.blind import redact_metadata, request_blindness
from webapp.rollouts import services as generation_services
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rollouts.selectors import RolloutFilterMeaning, rollout_filter
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.tasks.models import Task


@documented(filters=(Filter("task", "task_id"), Filter("status", "status", str)),
            create=s.GenerationJobCreateSerializer)
class GenerationJobViewSet(Cancellable, mixins.CreateModelMixin, ReadOnly):
    """Creating a job samples rollouts of the task's examples in the background (queue `rollout`); poll it for
    progress. Cancel keeps the rollouts already written."""

    queryset = GenerationJob.objects.none()
    serializer_class = s.GenerationJobSerializer

    def perform_cancel(self, job):
        generation_services.generation_job_cancel(job=job)

    def scoped(self, project):
        return GenerationJob.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        data = self.parse()
        job = generation_services.generation_job_create(
            project=request.project, task=in_project(Task.objects.filter(project=request.project), data["task"],
                                                     "task", "task"),
            endpoint=in_project(ModelEndpoint.objects.filter(project=request.project), data["endpoint"], "endpoint",
                                "endpoint"),
            split=data["split"], params={k: v for k, v in data["params"].items() if v is not None},
            samples_per_example=data["samples_per_example"], created_by=request.user,
            example_count=data["example_count"], example_seed=data["example_seed"],
        )
        return self.created(job)


def _agreement_tolerance(params) -> float | None:
    """The agreement filter's tolerance (None: the default)."""
    if not params.get("agreement_tolerance"):
        return None
    tolerance = AGREEMENT_TOLERANCE.parse(params["agreement_tolerance"])
    if not 0 < tolerance <= 1:
        raise ValidationError({"agreement_tolerance": "Must be above 0 and at most 1."})
    return tolerance


# Every filter goes to the one rollout filter (webapp/rollouts/selectors.py) by its name, with the API's meanings:
# rubric_version selects rollouts scored under it, score bounds without it compare any version's total, label_status
# counts labels under rubric_version when given. The agreement filters are applied on top.
LABEL_STATUS = {"labeled": "yes", "unlabeled": "no"}
AGREEMENT = Filter("agreement", "", str, "agree or disagree: judge scores and human labels under "
                   "rubric_version within agreement_tolerance on every criterion both scored, or apart on one.",
                   reads_scores=True)
AGREEMENT_TOLERANCE = Filter("agreement_tolerance", "", float,
                             "Largest judge–human gap (0..1) that counts as agreeing (default 0.5).")
ROLLOUT_MEANING = RolloutFilterMeaning(scored_under=True, bounds_any_version=True, labels_under_version=True)


@documented(
    filters=(
        Filter("task", ""), Filter("job", ""), Filter("run", ""), Filter("step", ""),
        Filter("example", ""), Filter("split", "", str, "Split of the rollout's example."),
        Filter("source", "", str, "generation, training or import"), Filter("group_key", "", str),
        Filter("model", "", str, "The model that wrote the rollout (its model name, exactly)."),
        Filter("q", "", str, "Text the completion contains (case-insensitive)."),
        Filter("rubric_version", "", int, "Rollouts scored under this rubric version.", reads_scores=True),
        Filter("score_min", "", float, "Total score ≥ this (under rubric_version if given).", reads_scores=True),
        Filter("score_max", "", float, "Total score ≤ this (under rubric_version if given).", reads_scores=True),
        Filter("label_status", "", str, "labeled or unlabeled: has human labels (under rubric_version if given)."),
        AGREEMENT, AGREEMENT_TOLERANCE,
    )
)
class RolloutViewSet(ReadOnly):
    queryset = Rollout.objects.none()
    serializer_class = s.RolloutSerializer
    rollout_field = "pk"

    def scoped(self, project):
        return Rollout.objects.filter(project=project)

    def filtered(self, queryset):
        params = self.request.query_params
        values = {spec.param: spec.parse(params[spec.param]) for spec in self.filters
                  if params.get(spec.param) not in (None, "")}
        if "label_status" in values:
            if values["label_status"] not in LABEL_STATUS:
                raise ValidationError({"label_status": "Expected labeled or unlabeled."})
            values["labeled"] = LABEL_STATUS[values.pop("label_status")]
        agreement = values.pop("agreement", None)
        values.pop("agreement_tolerance", None)
        # `queryset` is scoped(project): the project's rollouts, where the rollout filter starts too.
        blindness = request_blindness(self.request)
        meaning = ROLLOUT_MEANING if not blindness.active else dataclasses.replace(
            ROLLOUT_MEANING, hidden_scores=blindness.rollout_ids, viewer=self.request.user.pk)
        rollouts = rollout_filter(self.request.project, filters=values, meaning=meaning)
        if agreement is None:
            return rollouts
        if agreement not in AGREEMENTS:
            raise ValidationError({"agreement": "Expected agree or disagree."})
        if "rubric_version" not in values:
            raise ValidationError({"agreement": "Needs rubric_version: judge scores and labels are compared under it."})
        return rollouts_by_agreement(rollouts, rubric_version_id=values["rubric_version"], agreement=agreement,
                                     tolerance=_agreement_tolerance(params))

    def get_serializer(self, *args, **kwargs):
        if args and not getattr(self, "swagger_fake_view", False):
            blindness = request_blindness(self.request)
            for rollout in args[0] if isinstance(args[0], list | tuple) else [args[0]]:
                if blindness.hides(rollout.pk):  # rewards a run or an import stored in its metadata are scores too
                    rollout.metadata = redact_metadata(rollout.metadata)
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": s.RolloutImportSerializer},
        responses={201: s.ImportResultSerializer,
                   409: OpenApiResponse(description="This file (or Idempotency-Key) was already imported: `detail` "
                                                    "names the import, `import_id` is its id; nothing was imported.")},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
                                     description="Any string unique to this upload: a retry with the same key is "
                                                 "answered 409 with the first import, whatever the bytes.")],
    )
    @action(detail=False, methods=["post"], url_path="import", parser_classes=[MultiPartParser])
    def import_file(self, request, *args, **kwargs):
        """Import an export file of any kind and format, or a verifiers eval output (kind=verifiers): all rows or
        none; an error names its line."""
        data = self.parse(s.RolloutImportSerializer)
        project = request.project
        result = dataset_import(
            project=project, stream=data["file"], kind=data["kind"], format=data["format"],
            task=in_project(Task.objects.filter(project=project), data["task"], "task", "task"),
            rubric_version=in_project(rubric_versions_of_project(project),
                                      data["rubric_version"], "rubric_version", "rubric version"),
            user=request.user, metadata=data["metadata"], allow_duplicate=data["allow_duplicate"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        return Response({"import_id": result.import_id,
                         "imported": result.rollouts, "scores": result.scores, "labels": result.labels,
                         "pairwise_labels": result.pairwise_labels, "examples": result.examples},
                        status=status.HTTP_201_CREATED)
