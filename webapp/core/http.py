"""The request as our views see it, for the type checker: past login (a real user), with django-htmx's details
and, on project pages, the member's role (set by core.permissions.project_view)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class AppRequest(HttpRequest):
    user: User  # LoginRequiredMiddleware: never anonymous in a view
    htmx: HtmxDetails
    project_role: str
