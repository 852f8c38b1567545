"""The blind-review guard of score pages, asked by apps that sit below `reviews` in the app order.

The rule lives in `webapp.reviews.blind` (it reads review queues and assignments). Judging's job page shows scores of
many rollouts too, yet judging sits below reviews (reviews compares judges with humans), so the guard is looked up
here: `reviews` registers it in its AppConfig.ready. Without a registered guard every score page is refused (fail
closed), so a missing registration can never show scores to a blind annotator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied

_guard: Callable[[Any], None] | None = None


def scores_page_guard_register(guard: Callable[[Any], None]) -> None:
    """`guard(request)` raises (PermissionDenied or ApplicationError) when the request's user must not see scores."""
    global _guard
    _guard = guard


def scores_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a view (inside `project_view`) that shows scores of many rollouts: refused to a blind user."""

    @functools.wraps(view)
    def wrapper(request: Any, project: Any, *args: Any, **kwargs: Any) -> Any:
        if _guard is None:
            raise PermissionDenied("Score pages are unavailable: no blind-review rule is registered.")
        _guard(request)
        return view(request, project, *args, **kwargs)

    return wrapper
