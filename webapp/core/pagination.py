from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from webapp.core.params import parse_id


@dataclass(frozen=True)
class KeysetPage:
    """A page of rows ordered by id descending; `next_before` is the cursor for the next page (None at the end).

    Keyset pagination costs the same on page 1 and page 10,000, unlike OFFSET."""

    items: list[Any]
    next_before: int | None
    size: int


def keyset_page(queryset: QuerySet, *, before: int | None, size: int = 50) -> KeysetPage:
    if before is not None:
        queryset = queryset.filter(pk__lt=before)
    rows = list(queryset.order_by("-pk")[: size + 1])
    has_more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(items=rows, next_before=rows[-1].pk if has_more else None, size=size)


def parse_cursor(value: str | None) -> int | None:
    return parse_id(value, field="before")
