"""Query-string filters for list endpoints, declared per view and documented in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError

from webapp.judging.models import RolloutScore


@dataclass(frozen=True)
class Filter:
    param: str
    lookup: str | Callable[[QuerySet, Any, Any], QuerySet]
    kind: type = int
    description: str = ""
    reads_scores: bool = False  # blind review: rollouts blind for the caller never match it (see ProjectScopedViewSet)

    def parse(self, raw: str) -> Any:
        try:
            value = self.kind(raw)
        except (TypeError, ValueError):
            raise ValidationError({self.param: f"Expected {self.kind.__name__}, got {raw!r}."}) from None
        if self.kind is int and not 0 < value < 2**63:
            raise ValidationError({self.param: "Out of range."})
        if self.kind is float and value != value:  # NaN
            raise ValidationError({self.param: "Not a number."})
        return value

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


def _score_bound(op: str) -> Callable[[QuerySet, Any, Any], QuerySet]:
    """Rollouts with a total score (under ?rubric_version= when given) on the right side of the bound."""

    def apply(queryset: QuerySet, value: float, params) -> QuerySet:
        scores = RolloutScore.objects.filter(rollout=OuterRef("pk"), **{f"total__{op}": value})
        version = params.get("rubric_version")
        if version and str(version).isdigit():
            scores = scores.filter(rubric_version_id=int(version))
        return queryset.filter(Exists(scores))

    return apply


SCORE_MIN = Filter("score_min", _score_bound("gte"), float, "Total score ≥ this (under rubric_version if given).",
                   reads_scores=True)
SCORE_MAX = Filter("score_max", _score_bound("lte"), float, "Total score ≤ this (under rubric_version if given).",
                   reads_scores=True)
