"""Error pages. They render without project context and never leak the exception text of a 500."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.template import loader


def _render(request: HttpRequest, template: str, status: int, message: str = "") -> HttpResponse:
    body = loader.get_template(template).render({"message": message, "request": request})
    return HttpResponse(body, status=status)


@login_not_required
def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(request, "403.html", 403, str(exception or ""))


@login_not_required
def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _render(request, "404.html", 404)


@login_not_required
def server_error(request: HttpRequest) -> HttpResponse:
    return _render(request, "500.html", 500)
