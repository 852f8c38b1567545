from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from webapp.core.permissions import Action, role_allows

NAV_SECTIONS = [
    ("tasks", "Tasks", "tasks:list"),
    ("rubrics", "Rubrics", "rubrics:list"),
    ("endpoints", "Endpoints", "endpoints:list"),
    ("rollouts", "Rollouts", "rollouts:list"),
    ("judging", "Judging", "judging:list"),
    ("review", "Review", "reviews:list"),
    ("training", "Training", "runs:list"),
    ("compare", "Compare", "compare:view"),
    ("exports", "Exports", "exports:list"),
]


def project_nav(request: HttpRequest) -> dict:
    project = getattr(request, "project", None)
    if project is None:
        return {}
    current = request.resolver_match.namespace if request.resolver_match else ""
    namespace_for = {"tasks": "tasks", "rubrics": "rubrics", "endpoints": "endpoints", "rollouts": "rollouts",
                     "judging": "judging", "review": "reviews", "training": "runs", "exports": "exports",
                     "compare": "compare"}
    role = getattr(request, "project_role", None)
    return {
        "project": project,
        "project_role": role,
        "can_edit": role_allows(role, Action.EDIT),
        "can_manage": role_allows(role, Action.MANAGE),
        "project_nav": [
            {"key": key, "label": label, "url": reverse(name, args=[project.pk]), "active": namespace_for[key] == current}
            for key, label, name in NAV_SECTIONS
        ],
    }
