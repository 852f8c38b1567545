from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management.base import BaseCommand, CommandError

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.exports.import_datasets import dataset_import_path
from webapp.exports.import_rollouts import FORMATS
from webapp.exports.models import ExportKind
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.tasks import services as task_services
from webapp.tasks.example_files import ColumnRole, guess_roles
from webapp.tasks.models import Split, Task

EXAMPLES = "examples"
REASONING_GYM = "reasoning_gym"


class Command(BaseCommand):
    help = ("Import a file into a project, as the pages do: task examples (--kind examples: CSV, JSONL, JSON or "
            "Parquet, columns mapped as the preview guesses or with --column NAME=ROLE), any export kind in any "
            "format, or a verifiers run (a folder, its zip, or its lines file); --kind reasoning_gym generates a task from the "
            "reasoning-gym dataset named by PATH (--size, --seed, --config).")

    def add_arguments(self, parser):
        parser.add_argument("path", help="The file, or a verifiers run folder; for --kind reasoning_gym the "
                                         "dataset name (e.g. chain_sum).")
        parser.add_argument("--project", type=int, required=True, help="Project id.")
        parser.add_argument("--kind", choices=[EXAMPLES, REASONING_GYM, *ExportKind.values], default=ExportKind.ROLLOUTS,
                            help="examples = a task's examples; the others = what an export of that kind wrote "
                                 "(verifiers / verifiers_03: a verifiers run, either layout).")
        parser.add_argument("--format", choices=FORMATS, help="Export formats only; default: from the file name.")
        parser.add_argument("--task", type=int, help="Task id (required for examples).")
        parser.add_argument("--rubric-version", type=int, help="Store the file's rewards, scores and labels here.")
        parser.add_argument("--metadata", help="verifiers: configs/resolved/eval.json or metadata.json, when the "
                                               "path is the lines file.")
        parser.add_argument("--user", help="Username the import is made as (pairwise labels; staged examples).")
        parser.add_argument("--column", action="append", default=[], metavar="NAME=ROLE",
                            help=f"examples: map a column ({', '.join(r.value for r in ColumnRole)}); repeatable.")
        parser.add_argument("--split", choices=Split.values, default=Split.TRAIN,
                            help="examples: split of rows without a split column.")
        parser.add_argument("--size", type=int, default=100, help="reasoning_gym: examples to generate.")
        parser.add_argument("--seed", type=int, default=42, help="reasoning_gym: generator seed.")
        parser.add_argument("--config", default="", help="reasoning_gym: other config fields as a JSON object.")
        parser.add_argument("--task-name", default="", help="reasoning_gym: name of the new task.")
        parser.add_argument("--eval-size", type=int, default=0, help="reasoning_gym: last N examples go to eval.")
        parser.add_argument("--no-rubric", action="store_true", help="reasoning_gym: do not create the rubric.")

    def handle(self, *args, path: str, project: int, kind: str, format: str | None, task: int | None,
               rubric_version: int | None, metadata: str | None, user: str | None, column: list[str],
               split: str, **options):
        if kind == REASONING_GYM:
            self._reasoning_gym(path, project, user, options)
            return
        source = Path(path)
        if not source.exists():
            raise CommandError(f"No such file or folder: {source}")
        target = Project.objects.filter(pk=project).first()
        if target is None:
            raise CommandError(f"No project #{project}.")
        task_row = Task.objects.filter(project=target, pk=task).first() if task else None
        if task and task_row is None:
            raise CommandError(f"No task #{task} in project #{project}.")
        version = (rubric_versions_of_project(target).filter(pk=rubric_version)
                   .first() if rubric_version else None)
        if rubric_version and version is None:
            raise CommandError(f"No rubric version #{rubric_version} in project #{project}.")
        who = None
        if user:
            who = get_user_model().objects.filter(username=user).first()
            if who is None:
                raise CommandError(f"No user {user!r}.")
        try:
            if kind == EXAMPLES:
                if task_row is None:
                    raise CommandError("--kind examples needs --task.")
                self.stdout.write(self._examples(source, task_row, who, column, split))
                return
            if source.is_dir() and kind not in (ExportKind.VERIFIERS, ExportKind.VERIFIERS_03):
                raise CommandError("A folder is a verifiers run: use --kind verifiers, or give the file.")
            meta = open(metadata, "rb") if metadata else None  # noqa: SIM115 (closed below)
            try:
                result = dataset_import_path(path=source, format=format, project=target, kind=kind, task=task_row,
                                             rubric_version=version, user=who, metadata=meta)
            finally:
                if meta is not None:
                    meta.close()
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Imported {result.summary()}.")

    def _reasoning_gym(self, dataset: str, project: int, user: str | None, options: dict) -> None:
        import json

        from webapp.exports.sources import reasoning_gym_import

        target = Project.objects.filter(pk=project).first()
        if target is None:
            raise CommandError(f"No project #{project}.")
        who = get_user_model().objects.filter(username=user).first() if user else None
        if user and who is None:
            raise CommandError(f"No user {user!r}.")
        try:
            config = json.loads(options["config"]) if options["config"] else {}
        except json.JSONDecodeError as error:
            raise CommandError(f"--config is not JSON: {error}") from None
        try:
            result = reasoning_gym_import(
                project=target, dataset=dataset, size=options["size"], seed=options["seed"], config=config,
                task_name=options["task_name"], eval_size=options["eval_size"], with_rubric=not options["no_rubric"],
                user=who)
        except ApplicationError as error:
            raise CommandError(error.message) from None
        self.stdout.write(f"Generated {result.summary()} (task #{result.task.pk}).")

    def _examples(self, source: Path, task: Task, user, columns: list[str], split: str) -> str:
        """Stage, preview and confirm, as the upload page does, with the page's guessed mapping unless told."""
        if source.is_dir():
            raise CommandError("Examples come from a file, not a folder.")
        with open(source, "rb") as handle:
            staged = task_services.example_import_stage(task=task, user=user or _Nobody(),
                                                        upload=File(handle, name=source.name))
        try:
            preview = task_services.example_import_preview(staged=staged)
            roles = dict(guess_roles(preview.columns))
            for item in columns:
                name, sep, role = item.partition("=")
                if not sep or role not in ColumnRole.__members__.values():
                    raise CommandError(f"--column {item!r}: expected NAME=ROLE with a role of "
                                       f"{', '.join(r.value for r in ColumnRole)}.")
                if name not in preview.columns:
                    raise CommandError(f"--column {item!r}: the file has no column {name!r} "
                                       f"(it has {', '.join(preview.columns)}).")
                roles[name] = ColumnRole(role)
            count = task_services.examples_import(task=task, staged=staged, mapping=task_services.ImportMapping(
                roles=roles, default_split=split))
        except BaseException:
            task_services.example_import_discard(staged=staged)
            raise
        return f"Imported {count} examples into task #{task.pk}."


class _Nobody:
    """The staged upload's owner when the command runs as no user (the shell owns it; nobody previews it)."""

    pk = None
