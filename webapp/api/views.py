"""REST API, nested under /api/v1/projects/{project_id}/. Roles are decided by
`webapp.core.permissions.ProjectRolePermission` from the URL's project_id; querysets are always scoped to that
project, so an id from another project is a 404, never its data."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from webapp.api import serializers as s
from webapp.api.filters import SCORE_MAX, SCORE_MIN, Filter, apply_filters, uses_scores
from webapp.core import selectors as core_selectors
from webapp.core import services as core_services
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.permissions import Action, ProjectRolePermission
from webapp.endpoints import services as endpoint_services
from webapp.endpoints.models import ModelEndpoint
from webapp.endpoints.services import ENDPOINT_EDITABLE
from webapp.exports import services as export_services
from webapp.exports.hub import hub_push_create
from webapp.exports.import_kinds import dataset_import
from webapp.exports.models import Export
from webapp.exports.selectors import AGREEMENTS, rollouts_by_agreement
from webapp.exports.sources import reasoning_gym_import
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.judging import services as judging_services
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.reviews import services as review_services
from webapp.reviews.blind import redact_metadata, request_blindness
from webapp.reviews.models import HumanLabel, ReviewQueue
from webapp.rollouts import services as generation_services
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rubrics import services as rubric_services
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.runs import services as run_services
from webapp.runs.models import Checkpoint, TrainingMetric, TrainingRun
from webapp.tasks import services as task_services
from webapp.tasks.models import Example, Task

PROJECT_ID = OpenApiParameter("project_id", int, OpenApiParameter.PATH)
ID = OpenApiParameter("id", int, OpenApiParameter.PATH)


class ProjectScopedViewSet(viewsets.GenericViewSet):
    """Base for every nested resource: `scoped(project)` returns the project's rows with their relations loaded;
    `filters` are parsed from the query string and appear in the schema."""

    permission_classes = [IsAuthenticated, ProjectRolePermission]
    lookup_value_regex = "[0-9]{1,18}"
    filters: tuple[Filter, ...] = ()
    input_serializer_class: type | None = None
    # Blind review: the path from a row to its rollout id, for rows that a score filter may select.
    rollout_field: str | None = None

    def scoped(self, project: Project) -> QuerySet:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        queryset = self.scoped(self.request.project)
        if self.action == "list":
            queryset = apply_filters(queryset, self.request.query_params, self.filters)
            if self.rollout_field and uses_scores(self.request.query_params, self.filters):
                # A rollout blind for the caller looks unscored: no score or agreement filter matches it.
                queryset = request_blindness(self.request).without_scores_of(queryset, rollout_field=self.rollout_field)
        return queryset

    def parse(self, serializer_class=None) -> dict:
        serializer = (serializer_class or self.input_serializer_class)(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def created(self, obj) -> Response:
        return Response(self.get_serializer(obj).data, status=status.HTTP_201_CREATED)

    def merged(self, obj, serializer_class, fields: tuple[str, ...]) -> tuple[int, dict]:
        """(row_version, every editable field): the request's values over the row's current ones."""
        data = self.parse(serializer_class)
        row_version = data.pop("row_version")
        return row_version, {f: data.get(f, getattr(obj, f)) for f in fields}


def in_project(queryset: QuerySet, pk: int | None, field: str, noun: str):
    """The row `pk` of a project-scoped queryset, or a 400 naming the field (None stays None)."""
    if pk is None:
        return None
    found = queryset.filter(pk=pk).first()
    if found is None:
        raise ApplicationError(f"No such {noun} in this project.", field=field)
    return found


class Deletable(mixins.DestroyModelMixin):
    """DELETE (EDIT role, as in the UI); each viewset's `perform_destroy` calls its app's `<entity>_delete`."""

    @extend_schema(responses={204: None, 409: OpenApiResponse(description="The row is still in use.")})
    def destroy(self, request, *args, **kwargs):
        return super().destroy(request, *args, **kwargs)

    def perform_destroy(self, instance) -> None:
        raise NotImplementedError


class Cancellable:
    """POST .../{id}/cancel/: stop a pending or running job through its app's `<job>_cancel` service (in
    `perform_cancel`); answers the job as it is now (already finished jobs are left as they are)."""

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def cancel(self, request, *args, **kwargs):
        job = self.get_object()
        self.perform_cancel(job)
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)

    def perform_cancel(self, job) -> None:
        raise NotImplementedError


class Updatable(mixins.UpdateModelMixin):
    """PATCH (and PUT, same meaning) with the row_version that was read: a stale one answers 409 with the current
    values, never a silent overwrite."""

    http_method_names = ["get", "post", "patch", "put", "delete", "head", "options"]

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)


def documented(*, filters: tuple[Filter, ...] = (), create: type | None = None, update: type | None = None):
    """Apply the path and filter parameters (and the input bodies) to the schema of a viewset."""

    def decorate(cls):
        cls.filters = filters
        cls.input_serializer_class = create
        per_action = {"list": extend_schema(parameters=[f.parameter() for f in filters])}
        if create is not None:
            per_action["create"] = extend_schema(request=create)
        if update is not None:
            conflict = OpenApiResponse(description="Stale row_version; the body holds the current values.")
            per_action["partial_update"] = extend_schema(request=update, responses={200: cls.serializer_class,
                                                                                     409: conflict})
            per_action["update"] = extend_schema(request=update, responses={200: cls.serializer_class, 409: conflict})
        cls = extend_schema_view(**per_action)(cls)
        return extend_schema(parameters=[PROJECT_ID])(cls)

    return decorate


class ReadOnly(mixins.ListModelMixin, mixins.RetrieveModelMixin, ProjectScopedViewSet):
    pass


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


@documented(create=s.EndpointCreateSerializer, update=s.EndpointUpdateSerializer)
class EndpointViewSet(mixins.CreateModelMixin, Updatable, Deletable, ReadOnly):
    """Deleting an endpoint keeps the jobs and runs that used it (with their recorded model name)."""

    queryset = ModelEndpoint.objects.none()
    serializer_class = s.EndpointSerializer

    def perform_destroy(self, instance):
        endpoint_services.endpoint_delete(endpoint=instance)

    def scoped(self, project):
        return ModelEndpoint.objects.filter(project=project)

    def create(self, request, *args, **kwargs):
        return self.created(endpoint_services.endpoint_create(project=request.project, **self.parse()))

    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        row_version, values = self.merged(endpoint, s.EndpointUpdateSerializer, ENDPOINT_EDITABLE)
        return Response(self.get_serializer(endpoint_services.endpoint_update(
            endpoint=endpoint, row_version=row_version, **values)).data)


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


def _scored_under(queryset, version_id, params):
    return queryset.filter(Exists(RolloutScore.objects.filter(rollout=OuterRef("pk"), rubric_version_id=version_id)))


def _agreement(queryset, value, params):
    if value not in AGREEMENTS:
        raise ValidationError({"agreement": "Expected agree or disagree."})
    if not params.get("rubric_version"):
        raise ValidationError({"agreement": "Needs rubric_version: judge scores and labels are compared under it."})
    version = Filter("rubric_version", "").parse(params["rubric_version"])
    tolerance = None
    if params.get("agreement_tolerance"):
        tolerance = Filter("agreement_tolerance", "", float).parse(params["agreement_tolerance"])
        if not 0 < tolerance <= 1:
            raise ValidationError({"agreement_tolerance": "Must be above 0 and at most 1."})
    return rollouts_by_agreement(queryset, rubric_version_id=version, agreement=value, tolerance=tolerance)


def _tolerance_only(queryset, value, params):
    return queryset  # read by the agreement filter


AGREEMENT = Filter("agreement", _agreement, str, "agree or disagree: judge scores and human labels under "
                   "rubric_version within agreement_tolerance on every criterion both scored, or apart on one.",
                   reads_scores=True)
AGREEMENT_TOLERANCE = Filter("agreement_tolerance", _tolerance_only, float,
                             "Largest judge–human gap (0..1) that counts as agreeing (default 0.5).")


@documented(
    filters=(
        Filter("task", "task_id"), Filter("job", "job_id"), Filter("run", "run_id"), Filter("step", "step"),
        Filter("example", "example_id"), Filter("split", "example__split", str, "Split of the rollout's example."),
        Filter("source", "source", str, "generation, training or import"), Filter("group_key", "group_key", str),
        Filter("rubric_version", _scored_under, int, "Rollouts scored under this rubric version.", reads_scores=True),
        SCORE_MIN, SCORE_MAX, AGREEMENT, AGREEMENT_TOLERANCE,
    )
)
class RolloutViewSet(ReadOnly):
    queryset = Rollout.objects.none()
    serializer_class = s.RolloutSerializer
    rollout_field = "pk"

    def scoped(self, project):
        return Rollout.objects.filter(project=project)

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
            rubric_version=in_project(RubricVersion.objects.filter(rubric__project=project).select_related("rubric"),
                                      data["rubric_version"], "rubric_version", "rubric version"),
            user=request.user, metadata=data["metadata"], allow_duplicate=data["allow_duplicate"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        return Response({"import_id": result.import_id,
                         "imported": result.rollouts, "scores": result.scores, "labels": result.labels,
                         "pairwise_labels": result.pairwise_labels, "examples": result.examples},
                        status=status.HTTP_201_CREATED)


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
        version = RubricVersion.objects.select_related("rubric").filter(
            rubric__project=request.project, pk=data["rubric_version"]).first()
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
        version = in_project(RubricVersion.objects.filter(rubric__project=project).select_related("rubric"),
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
            rubric_version=in_project(RubricVersion.objects.filter(rubric__project=project).select_related("rubric"),
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
