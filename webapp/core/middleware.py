from __future__ import annotations

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequiredMiddleware
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from webapp.core.errors import ApplicationError


class ApplicationErrorMiddleware:
    """Maps ApplicationError raised by a view to a page (or an htmx fragment) with the user-facing message."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 405 and not response.content and not request.path_info.startswith("/api/"):
            # require_POST and friends answer an empty body: a person who opened the address sees a page instead.
            page = render(request, "405.html", {"allowed": response.get("Allow", ""), "back": _same_site_back(request)},
                          status=405)
            page["Allow"] = response.get("Allow", "")
            return page
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, ApplicationError):
            return None
        template = "core/_error.html" if getattr(request, "htmx", False) else "core/error.html"
        return render(request, template, {"error": exception}, status=exception.status)


def _same_site_back(request: HttpRequest) -> str:
    """The referring page when it is on this site, else the project list."""
    referer = request.headers.get("Referer", "")
    return referer if url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}) and referer else "/"


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Every page needs a login. The API answers 401/403 itself (DRF authentication), never a login redirect."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
