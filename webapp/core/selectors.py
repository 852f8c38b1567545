from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

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


# job kind -> resolver(ids) -> {id: (project id, url of the job's page)}; each app registers its kinds from its
# AppConfig.ready, so the workers page links jobs without core importing the apps.
JobLinker = Callable[[Iterable[int]], dict[int, tuple[int, str]]]
_job_linkers: dict[str, JobLinker] = {}


def job_linker_register(kind: str, linker: JobLinker) -> None:
    _job_linkers[kind] = linker


def job_linker(model: Any, url_name: str, *, with_id: bool = True) -> JobLinker:
    """A linker for a job model with a `project` foreign key and a page named `url_name` (project id, job id)."""
    from django.urls import reverse

    def link(ids: Iterable[int]) -> dict[int, tuple[int, str]]:
        rows = model.objects.filter(pk__in=list(ids)).values_list("pk", "project_id")
        return {pk: (project_id, reverse(url_name, args=[project_id, pk] if with_id else [project_id]))
                for pk, project_id in rows}

    return link


@dataclass
class RunningTask:
    task: str
    kind: str = ""
    job_id: int | None = None
    chunk: int | None = None
    since: dt.datetime | None = None
    url: str = ""  # the job's page, for members of its project
    hidden: bool = False  # a job of a project the viewer is not a member of: kind only


@dataclass
class WorkerHealth:
    hostname: str
    queues: list[str]
    seen_at: dt.datetime
    started_at: dt.datetime | None
    stale: bool
    running: list[RunningTask] = field(default_factory=list)


def worker_stale_after_s() -> float:
    return 3 * float(settings.RUBRICON_WORKER_HEARTBEAT_S)


def workers_health(user: Any) -> list[WorkerHealth]:
    """Every worker that has reported: its queues, last beat, whether it went silent (no beat for three periods:
    killed, hung, or its node is down) and what it runs, each job linked for members of the job's project (staff
    see every link); a job of another project shows as its kind only, without its id."""
    rows = list(WorkerHeartbeat.objects.order_by("hostname", "queue"))
    now = timezone.now()
    workers: dict[str, WorkerHealth] = {}
    for row in rows:
        worker = workers.get(row.hostname)
        if worker is None:
            worker = workers[row.hostname] = WorkerHealth(
                hostname=row.hostname, queues=[], seen_at=row.seen_at, started_at=row.started_at, stale=False)
            worker.running = [_running_task(entry) for entry in (row.running or []) if isinstance(entry, dict)]
        worker.queues.append(row.queue)
        if row.seen_at > worker.seen_at:
            worker.seen_at = row.seen_at
    stale_after = dt.timedelta(seconds=worker_stale_after_s())
    for worker in workers.values():
        worker.stale = now - worker.seen_at > stale_after
        if worker.stale:
            worker.running = []  # what it ran then is not what it runs now
    _link_jobs([task for worker in workers.values() for task in worker.running], user)
    return sorted(workers.values(), key=lambda w: (w.stale, w.hostname))


def _running_task(entry: dict[str, Any]) -> RunningTask:
    since = entry.get("since")
    return RunningTask(
        task=str(entry.get("task", "")), kind=str(entry.get("kind", "")),
        job_id=entry["id"] if isinstance(entry.get("id"), int) else None,
        chunk=entry["chunk"] if isinstance(entry.get("chunk"), int) else None,
        since=dt.datetime.fromtimestamp(since, tz=dt.UTC) if isinstance(since, int | float) else None,
    )


def _link_jobs(tasks: list[RunningTask], user: Any) -> None:
    by_kind: dict[str, set[int]] = {}
    for task in tasks:
        if task.kind and task.job_id is not None:
            by_kind.setdefault(task.kind, set()).add(task.job_id)
    links: dict[tuple[str, int], tuple[int, str]] = {}
    for kind, ids in by_kind.items():
        linker = _job_linkers.get(kind)
        if linker is not None:
            links.update({(kind, pk): link for pk, link in linker(ids).items()})
    member_of = set(Membership.objects.filter(user=user).values_list("project_id", flat=True))
    for task in tasks:
        if task.job_id is None:
            continue
        link = links.get((task.kind, task.job_id))
        if link is not None and (user.is_staff or link[0] in member_of):
            task.url = link[1]
        elif not user.is_staff:
            task.hidden = True  # another project's job (or one no page shows): its kind, not its id
