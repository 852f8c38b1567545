"""REST API, nested under /api/v1/projects/{project_id}/. Roles are decided by
`webapp.core.permissions.ProjectRolePermission` from the URL's project_id; querysets are always scoped to that
project, so an id from another project is a 404, never its data."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from webapp.api.filters import Filter, apply_filters, uses_scores
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.permissions import ProjectRolePermission
from webapp.reviews.blind import request_blindness

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
    # Blind review, for rows people write (labels, rankings, gold responses): the paths to the rollout or review item
    # the row is about; other annotators' rows about a rollout blind for the caller are left out of every action.
    others_hidden: dict[str, str | None] | None = None

    def scoped(self, project: Project) -> QuerySet:
        raise NotImplementedError

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return self.queryset
        queryset = self.scoped(self.request.project)
        if self.others_hidden is not None:
            queryset = request_blindness(self.request).without_others_labels(queryset, user=self.request.user,
                                                                            **self.others_hidden)
        if self.action == "list":
            queryset = self.filtered(queryset)
            if self.rollout_field and uses_scores(self.request.query_params, self.filters):
                # A rollout blind for the caller looks unscored: no score or agreement filter matches it.
                queryset = request_blindness(self.request).without_scores_of(queryset, rollout_field=self.rollout_field)
        return queryset

    def filtered(self, queryset: QuerySet) -> QuerySet:
        """The list's rows under the query string's filters."""
        return apply_filters(queryset, self.request.query_params, self.filters)

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
