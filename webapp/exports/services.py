from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_cancel, job_fail, job_finish, job_progress, job_start
from webapp.core.models import Project
from webapp.exports import writers
from webapp.exports.datasets import dataset_build
from webapp.exports.models import Export, ExportFormat, ExportKind
from webapp.exports.selectors import export_filters_clean
from webapp.rubrics.selectors import rubric_versions_of_project

logger = logging.getLogger(__name__)
# Kinds written as a verifiers run folder (zipped), whatever the format says.
VERIFIERS_WRITERS = {ExportKind.VERIFIERS: writers.write_verifiers, ExportKind.VERIFIERS_03: writers.write_verifiers_03}


def _validate(kind: str, format: str) -> None:
    if kind not in ExportKind.values:
        raise ApplicationError(f"Unknown export kind {kind!r}; use {', '.join(ExportKind.values)}.", field="kind")
    if format not in ExportFormat.values:
        raise ApplicationError(f"Unknown format {format!r}; use {', '.join(ExportFormat.values)}.", field="format")
    if kind in VERIFIERS_WRITERS and format != ExportFormat.JSONL:
        raise ApplicationError("verifiers exports are JSONL run folders, zipped (0.4: traces.jsonl + "
                               "configs/resolved/eval.json; ≤ 0.3: results.jsonl + metadata.json).", field="format")


@transaction.atomic
def export_create(
    *, project: Project, kind: str, format: str, filters: dict[str, Any] | None = None, created_by: Any = None,
    enqueue: bool = True,
) -> Export:
    """Record an export and queue it on the `default` queue once the row is committed."""
    _validate(kind, format)
    clean = export_filters_clean(filters or {})
    _check_references(project, clean)
    export = Export.objects.create(project=project, kind=kind, format=format, filters=clean, created_by=created_by)
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.exports.run_export", export_id=export.pk)
    return export


def _check_references(project: Project, filters: dict[str, Any]) -> None:
    """Ids in filters must belong to the project: an export never reads another project's rows."""
    from webapp.rollouts.models import GenerationJob
    from webapp.runs.models import TrainingRun
    from webapp.tasks.models import Task

    for name, queryset in (
        ("task", Task.objects.filter(project=project)),
        ("job", GenerationJob.objects.filter(project=project)),
        ("run", TrainingRun.objects.filter(project=project)),
        ("rubric_version", rubric_versions_of_project(project)),
    ):
        if name in filters and not queryset.filter(pk=filters[name]).exists():
            raise ApplicationError(f"No {name.replace('_', ' ')} #{filters[name]} in this project.", field="filters")


def export_path(export: Export) -> tuple[str, Path]:
    ext = "zip" if export.kind in VERIFIERS_WRITERS else writers.EXTENSIONS[export.format]
    name = f"exports/{export.project_id}/{export.pk}-{export.kind}.{ext}"
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return name, path


def download_name(export: Export) -> str:
    return f"{export.project.slug}-{Path(export.file.name).name}"


class ExportCancelled(Exception):
    """Raised inside a running export when its row was cancelled: the writer stops at the next progress check."""


def export_cancel(*, export: Export) -> bool:
    """Stop a pending or running export. A pending one never starts; a running one stops at its next progress
    check (every few thousand rows) and its partial file is removed. False when it had already finished."""
    return job_cancel(model=Export, job_id=export.pk)


@transaction.atomic
def export_delete(*, export: Export) -> None:
    """Delete an export and its file. A running export is cancelled first (it stops at its next progress check)."""
    export_cancel(export=export)
    name = export.file.name if export.file else ""
    export.delete()
    if name:
        transaction.on_commit(lambda: (Path(settings.MEDIA_ROOT) / name).unlink(missing_ok=True))


def export_write(*, export_id: int) -> Export | None:
    """Write the export's file, with progress on the row. Safe to run twice: only a pending export is claimed.
    Cancel is a status the writer checks with every progress update."""
    if not job_start(model=Export, job_id=export_id):
        logger.info("export %s is not pending; nothing to do", export_id)
        return None
    export = Export.objects.select_related("project").get(pk=export_id)
    name, path = export_path(export)
    try:
        dataset = dataset_build(project=export.project, kind=export.kind, filters=export.filters)
        if not job_progress(model=Export, job_id=export.pk, total=dataset.total):
            raise ExportCancelled

        written = 0

        def progress(n: int) -> None:
            # The writers report the rows written so far every few thousand rows: already batched.
            nonlocal written
            if not job_progress(model=Export, job_id=export.pk, done=n - written):
                raise ExportCancelled
            written = n

        write = VERIFIERS_WRITERS.get(ExportKind(export.kind)) or writers.WRITERS[export.format]
        rows = write(path, dataset, progress)
    except ExportCancelled:
        path.unlink(missing_ok=True)
        logger.info("export %s was cancelled while running", export_id)
        return Export.objects.get(pk=export.pk)
    except ApplicationError as error:
        _fail(export, path, error.message)
        return Export.objects.get(pk=export.pk)
    except Exception as error:  # a failed export is recorded on its row, readable, then re-raised for the log
        _fail(export, path, f"{type(error).__name__}: {error}")
        raise
    if not job_finish(model=Export, job_id=export.pk, file=name, done=rows):
        path.unlink(missing_ok=True)  # cancelled after the last progress check
    return Export.objects.get(pk=export.pk)


def _fail(export: Export, path: Path, reason: str) -> None:
    path.unlink(missing_ok=True)
    job_fail(model=Export, job_id=export.pk, error=reason[:2000])
