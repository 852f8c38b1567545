"""Project roles, checked here and nowhere else (views, htmx partials and the API all call this module).

Non-members get 404, not 403: a project's existence is itself project data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from rest_framework import permissions

from webapp.core.models import Membership, Project, Role


class Action(StrEnum):
    VIEW = "view"  # read everything in the project
    LABEL = "label"  # submit human labels in review queues
    EDIT = "edit"  # create and change tasks, rubrics, endpoints; launch jobs and runs
    MANAGE = "manage"  # members and project settings


ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    Role.OWNER: frozenset(Action),
    Role.EDITOR: frozenset({Action.VIEW, Action.LABEL, Action.EDIT}),
    Role.ANNOTATOR: frozenset({Action.VIEW, Action.LABEL}),
    Role.VIEWER: frozenset({Action.VIEW}),
}


def role_allows(role: str | None, action: Action) -> bool:
    return role is not None and action in ROLE_ACTIONS.get(role, frozenset())


def project_role(user: Any, project_id: int) -> str | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return (
        Membership.objects.filter(project_id=project_id, user_id=user.pk).values_list("role", flat=True).first()
    )


def check_project_access(user: Any, project_id: int, action: Action) -> tuple[Project, str]:
    """Return (project, role) or raise Http404 (not a member) / PermissionDenied (role too weak)."""
    membership = (
        Membership.objects.select_related("project")
        .filter(project_id=project_id, user_id=getattr(user, "pk", None))
        .first()
    )
    if membership is None or not getattr(user, "is_authenticated", False):
        raise Http404("No such project.")
    if not role_allows(membership.role, action):
        raise PermissionDenied(f"Your role ({membership.role}) cannot {action.value} in this project.")
    return membership.project, membership.role


def project_view(action: Action) -> Callable:
    """Decorate a view taking `project_id`: checks the role, sets request.project and request.project_role."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, project_id: int, *args: Any, **kwargs: Any):
            project, role = check_project_access(request.user, project_id, action)
            request.project = project  # type: ignore[attr-defined]
            request.project_role = role  # type: ignore[attr-defined]
            return view(request, project, *args, **kwargs)

        return wrapper

    return decorator


class ProjectRolePermission(permissions.BasePermission):
    """DRF side of the same rules: views name `project_id` in the URL; reads need VIEW, writes EDIT,
    unless the view sets `write_action` (e.g. LABEL for label submission)."""

    def has_permission(self, request, view) -> bool:
        project_id = view.kwargs.get("project_id")
        if project_id is None:
            return bool(request.user and request.user.is_authenticated)
        action = Action.VIEW if request.method in permissions.SAFE_METHODS else getattr(view, "write_action", Action.EDIT)
        project, role = check_project_access(request.user, int(project_id), action)
        request.project = project
        request.project_role = role
        return True
