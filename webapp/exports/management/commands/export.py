from __future__ import annotations

import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Project
from webapp.exports.models import ExportFormat, ExportKind
from webapp.exports.selectors import FILTERS
from webapp.exports.services import export_create, export_write


class Command(BaseCommand):
    help = "Export a project's data (rollouts, SFT, preferences, reward-model, calibration, verifiers)."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Project id.")
        parser.add_argument("--kind", choices=ExportKind.values, default=ExportKind.ROLLOUTS)
        parser.add_argument("--format", choices=ExportFormat.values, default=ExportFormat.JSONL)
        parser.add_argument(
            "--filter", action="append", default=[], metavar="NAME=VALUE",
            help=f"Repeatable. Names: {', '.join(FILTERS)}.",
        )
        parser.add_argument("--output", "-o", help="Copy the file here as well.")
        parser.add_argument("--background", action="store_true", help="Queue it on the Celery `default` queue.")

    def handle(self, *args, project: int, kind: str, format: str, filter: list[str], output: str | None,
               background: bool, **options):
        target = Project.objects.filter(pk=project).first()
        if target is None:
            raise CommandError(f"No project #{project}.")
        filters = {}
        for item in filter:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--filter {item!r}: expected NAME=VALUE.")
            filters[name.strip()] = value.strip()
        try:
            export = export_create(project=target, kind=kind, format=format, filters=filters, enqueue=background)
        except ApplicationError as error:
            raise CommandError(error.message) from None
        if background:
            self.stdout.write(f"Export #{export.pk} queued.")
            return
        export = export_write(export_id=export.pk)
        if export is None or export.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Export failed: {export.error if export else 'not pending'}")
        if output:
            shutil.copyfile(export.file.path, Path(output))
        self.stdout.write(f"Export #{export.pk}: {export.done} rows → {output or export.file.path}")
