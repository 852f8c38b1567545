from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from webapp.core.errors import ApplicationError
from webapp.core.models import Membership, Project, Role, WorkerHeartbeat

User = get_user_model()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:180] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def project_create(*, name: str, owner: Any, description: str = "", slug: str | None = None) -> Project:
    name = name.strip()
    if not name:
        raise ApplicationError("A project needs a name.", field="name")
    project = Project.objects.create(
        name=name, slug=slug or _unique_slug(name), description=description, created_by=owner
    )
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    return project


@transaction.atomic
def membership_set(*, project: Project, username: str, role: str) -> Membership:
    """Add a user to the project or change their role. The last owner cannot be demoted."""
    if role not in Role.values:
        raise ApplicationError(f"Unknown role {role!r}; choose one of {', '.join(Role.values)}.", field="role")
    user = User.objects.filter(username=username.strip()).first()
    if user is None:
        raise ApplicationError(f"No user named {username!r}.", field="username")
    # Lock the project's owner rows so two concurrent demotions cannot both pass the last-owner check.
    owners = list(Membership.objects.select_for_update().filter(project=project, role=Role.OWNER))
    membership, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
    if not created and membership.role != role:
        if membership.role == Role.OWNER and len(owners) == 1:
            raise ApplicationError("A project needs at least one owner; add another owner first.", field="role")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user_id: int) -> None:
    owners = list(Membership.objects.select_for_update().filter(project=project, role=Role.OWNER))
    membership = Membership.objects.filter(project=project, user_id=user_id).first()
    if membership is None:
        raise ApplicationError("That user is not a member of this project.", status=404)
    if membership.role == Role.OWNER and len(owners) == 1:
        raise ApplicationError("A project needs at least one owner; add another owner first.")
    membership.delete()


def worker_heartbeat_record(*, hostname: str, queue: str, at: dt.datetime | None = None, checked: bool = False
                            ) -> WorkerHeartbeat:
    """A sign of life of `hostname` on `queue`; `checked`: it ran a `heartbeat` task sent to that queue."""
    at = at or timezone.now()
    defaults: dict[str, object] = {"seen_at": at}
    if checked:
        defaults["checked_at"] = at
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(hostname=hostname, queue=queue, defaults=defaults)
    return heartbeat


def worker_heartbeat_beat(*, hostname: str, queues: list[str], running: list[dict[str, Any]], started_at: dt.datetime) -> None:
    """The periodic beat of a worker: one row per queue it consumes, with what it runs now; rows of queues it no
    longer consumes go."""
    now = timezone.now()
    with transaction.atomic():
        for queue in queues:
            WorkerHeartbeat.objects.update_or_create(
                hostname=hostname, queue=queue,
                defaults={"seen_at": now, "running": running, "started_at": started_at},
            )
        WorkerHeartbeat.objects.filter(hostname=hostname).exclude(queue__in=queues).delete()


def worker_heartbeat_forget(*, hostname: str) -> None:
    """A worker that stops cleanly leaves the list (a killed one stays, marked stale)."""
    WorkerHeartbeat.objects.filter(hostname=hostname).delete()
