from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from webapp.core.models import Membership, Project, WorkerHeartbeat


def projects_for_user(user: Any) -> QuerySet[Project]:
    """The user's projects, each annotated with `role`."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    return Project.objects.filter(memberships__user=user).annotate(role=Subquery(role)).order_by("name")


def project_members(project: Project) -> QuerySet[Membership]:
    return project.memberships.select_related("user").order_by("user__username")


ProjectCounter = Callable[[Project], dict[str, int]]
_project_counters: list[ProjectCounter] = []


def project_counter_register(counter: ProjectCounter) -> None:
    """Each app adds its headline numbers to the overview from its AppConfig.ready, so core imports no app."""
    if counter not in _project_counters:
        _project_counters.append(counter)


def project_counts(project: Project) -> dict[str, int]:
    """Headline numbers for the dashboard: every registered app's counts, one query per table."""
    counts: dict[str, int] = {}
    for counter in _project_counters:
        counts.update(counter(project))
    return counts


def workers_seen() -> QuerySet[WorkerHeartbeat]:
    return WorkerHeartbeat.objects.order_by("queue", "-seen_at")
