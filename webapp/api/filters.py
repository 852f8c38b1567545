"""Query-string filters for list endpoints, declared per view and documented in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

from webapp.core.errors import ApplicationError
from webapp.core.params import parse_float, parse_id


@dataclass(frozen=True)
class Filter:
    param: str
    lookup: str | Callable[[QuerySet, Any, Any], QuerySet]
    kind: type = int
    description: str = ""
    reads_scores: bool = False  # blind review: rollouts blind for the caller never match it (see ProjectScopedViewSet)

    def parse(self, raw: str) -> Any:
        try:
            if self.kind is int:
                return parse_id(raw, field=self.param)
            if self.kind is float:
                return parse_float(raw, field=self.param)
        except ApplicationError as error:
            raise ValidationError({self.param: error.message}) from None
        return self.kind(raw)

    def parameter(self) -> OpenApiParameter:
        return OpenApiParameter(self.param, self.kind, OpenApiParameter.QUERY, description=self.description)


def uses_scores(params, filters: tuple[Filter, ...]) -> bool:
    """Whether the query string uses a filter that compares judge scores."""
    return any(spec.reads_scores and params.get(spec.param) not in (None, "") for spec in filters)


def apply_filters(queryset: QuerySet, params, filters: tuple[Filter, ...]) -> QuerySet:
    for spec in filters:
        raw = params.get(spec.param)
        if raw in (None, ""):
            continue
        value = spec.parse(raw)
        if callable(spec.lookup):
            queryset = spec.lookup(queryset, value, params)
        else:
            queryset = queryset.filter(**{spec.lookup: value})
    return queryset
