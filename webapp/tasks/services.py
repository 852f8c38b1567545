from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError

from training.templating import BoundedTemplate, TemplateLimitError, bounded_environment
from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.idempotency import AlreadyImported, file_sha256, import_claim, import_done, import_scope
from webapp.core.locking import row_version_update
from webapp.core.models import ImportRecord, Project
from webapp.tasks import example_files as imports
from webapp.tasks.example_files import ColumnRole, FileFormat
from webapp.tasks.models import Example, Split, Task, TaskKind

TEMPLATE_VARIABLES = frozenset({"prompt", "answer", "info"})
ENVIRONMENTS = ("wordle", "tools", "verifiers")
EXTERNAL_ID_MAX: int = Example._meta.get_field("external_id").max_length or 0
IMPORT_TTL_S = 24 * 3600
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True)
class ExampleData:
    external_id: str
    prompt: str = ""
    answer: str = ""
    split: str = Split.TRAIN
    info: dict[str, Any] = field(default_factory=dict[str, Any])
    messages: list[Any] | None = None
    location: str = ""  # where it came from, for error messages ("Line 12")


# --- tasks -------------------------------------------------------------------------------------------------------


class _AnyInfo(dict[str, Any]):
    """Sample `info` for checking a template: every field exists, so `info.whatever` renders."""

    def __missing__(self, key: str) -> _AnyInfo:
        return _AnyInfo()


def prompt_template_check(template: str) -> None:
    """Refuse a prompt template that does not compile, names variables other than prompt, answer and info, or
    does something the sandbox forbids. Type errors that depend on the data (info.n + 1) are left to render time."""
    env = bounded_environment(undefined=StrictUndefined)
    try:
        ast = env.parse(template)
        compiled = env.from_string(template)  # unknown filters and tests fail here, not in parse()
    except TemplateSyntaxError as exc:
        raise ApplicationError(f"Line {exc.lineno}: {(exc.message or 'syntax error').rstrip('.')}.", field="prompt_template") from None
    unknown = sorted(meta.find_undeclared_variables(ast) - TEMPLATE_VARIABLES)
    if unknown:
        raise ApplicationError(
            f"Unknown variable {unknown[0]!r}: a prompt template can use prompt, answer and info "
            f"(e.g. {{{{ info.{unknown[0]} }}}} for a field kept in info).", field="prompt_template")
    try:
        cast(BoundedTemplate, compiled).render_bounded(dict(prompt="What is 2 + 2?", answer="4", info=_AnyInfo()), seconds=1.0)
    except TemplateLimitError as exc:
        raise ApplicationError(f"The template exceeds a limit: {exc}.", field="prompt_template") from None
    except (UndefinedError, SecurityError) as exc:
        raise ApplicationError(f"The template cannot render: {str(exc).rstrip('.')}.", field="prompt_template") from None
    except Exception:  # noqa: BLE001 - data-dependent errors (types, arithmetic) are not the template's fault here
        pass


def _task_fields_check(*, kind: str, environment: str, environment_config: Any, prompt_template: str) -> str:
    if kind not in TaskKind.values:
        raise ApplicationError(f"Unknown task kind {kind!r}.", field="kind")
    if kind == TaskKind.ENVIRONMENT:
        if environment not in ENVIRONMENTS:
            raise ApplicationError(f"Choose an environment ({' or '.join(ENVIRONMENTS)}).", field="environment")
    else:
        environment = ""
    if not isinstance(environment_config, dict):
        raise ApplicationError("The environment config must be a JSON object ({...}).", field="environment_config")
    if environment == "verifiers":
        verifiers_config_check(environment_config)
    prompt_template_check(prompt_template)
    return environment


def is_verifiers_task(task: Task) -> bool:
    """Backed by a verifiers 0.4 environment (webapp.exports.verifiers_tasks)."""
    return task.kind == TaskKind.ENVIRONMENT and task.environment == "verifiers"


def verifiers_config_check(config: dict[str, Any]) -> None:
    """A verifiers-backed task: {"taskset": {"id": ..., <taskset options>}, "harness": {"id": ...}, "max_turns": n};
    the taskset and harness must be plugins the operator allows (RUBRICON_VERIFIERS_PLUGINS)."""
    from training.generation.verifiers_env import DEFAULT_HARNESS, plugin_allowed

    allowed = tuple(settings.RUBRICON_VERIFIERS_PLUGINS)
    unknown = sorted(set(config) - {"taskset", "harness", "max_turns"})
    if unknown:
        raise ApplicationError(f"Unknown verifiers option(s) {', '.join(unknown)}; use taskset, harness, max_turns.",
                               field="environment_config")
    for name, default in (("taskset", None), ("harness", DEFAULT_HARNESS)):
        value = config.get(name, {"id": default} if default else None)
        if not isinstance(value, dict) or not isinstance(value.get("id"), str) or not value["id"]:
            raise ApplicationError(f'Give the verifiers {name} as {{"id": "<plugin>", ...options}}, e.g. '
                                   + ('{"id": "textarena", "game": "Wordle-v0"}.' if name == "taskset"
                                      else f'{{"id": "{DEFAULT_HARNESS}"}}.'), field="environment_config")
        if not plugin_allowed(value["id"], allowed):
            raise ApplicationError(f"The verifiers {name} {value['id']!r} is not allowed here; the operator allows "
                                   f"{', '.join(allowed) or 'none'} (RUBRICON_VERIFIERS_PLUGINS).",
                                   field="environment_config")
    turns = config.get("max_turns")
    if turns is not None and (not isinstance(turns, int) or isinstance(turns, bool) or not 1 <= turns <= 100):
        raise ApplicationError("max_turns must be a whole number 1..100.", field="environment_config")


def _task_name_check(project: Project, name: str, *, exclude_pk: int | None = None) -> str:
    name = name.strip()
    if not name:
        raise ApplicationError("A task needs a name.", field="name")
    if Task.objects.filter(project=project, name=name).exclude(pk__in=[] if exclude_pk is None else [exclude_pk]).exists():
        raise ApplicationError(f"A task named {name!r} already exists in this project.", field="name")
    return name


@transaction.atomic
def task_create(
    *,
    project: Project,
    name: str,
    instructions: str = "",
    system_prompt: str = "",
    prompt_template: str = "{{ prompt }}",
    kind: str = TaskKind.SINGLE_TURN,
    environment: str = "",
    environment_config: dict[str, Any] | None = None,
    created_by: Any = None,
) -> Task:
    name = _task_name_check(project, name)
    environment_config = {} if environment_config is None else environment_config
    environment = _task_fields_check(kind=kind, environment=environment, environment_config=environment_config,
                                     prompt_template=prompt_template)
    return Task.objects.create(
        project=project, name=name, instructions=instructions, system_prompt=system_prompt,
        prompt_template=prompt_template, kind=kind, environment=environment,
        environment_config=environment_config, created_by=created_by,
    )


TASK_EDITABLE = ("name", "instructions", "system_prompt", "prompt_template", "kind", "environment",
                 "environment_config")


@transaction.atomic
def task_update(
    *,
    task: Task,
    row_version: int,
    name: str,
    instructions: str,
    system_prompt: str,
    prompt_template: str,
    kind: str,
    environment: str,
    environment_config: dict[str, Any],
) -> Task:
    """Apply an edit made on `row_version`; if someone saved since, refuse with the current values."""
    name = _task_name_check(task.project, name, exclude_pk=task.pk)
    environment = _task_fields_check(kind=kind, environment=environment, environment_config=environment_config,
                                     prompt_template=prompt_template)
    values = {"name": name, "instructions": instructions, "system_prompt": system_prompt,
              "prompt_template": prompt_template, "kind": kind, "environment": environment,
              "environment_config": environment_config}
    row_version_update(
        instance=task, row_version=row_version, values={**values, "updated_at": timezone.now()},
        shown_fields=TASK_EDITABLE, noun="task",
        duplicate_name_message=f"A task named {name!r} already exists in this project.",
    )
    return task


@transaction.atomic
def task_delete(*, task: Task) -> None:
    """Delete a task and its examples. A task with rollouts or training runs is kept: deleting it would take
    their scores and human labels with it."""
    rollouts = task.rollouts.count()
    runs = task.training_runs.count()
    if rollouts or runs:
        held = " and ".join(
            part for part in (f"{rollouts} rollout(s)" if rollouts else "", f"{runs} training run(s)" if runs else "")
            if part)
        raise ApplicationError(
            f"This task has {held}; deleting it would delete their scores and labels too. Delete or export them "
            "first.", status=409)
    task.delete()


# --- examples ----------------------------------------------------------------------------------------------------


def _unstorable(value: Any) -> str | None:
    """Why Postgres would refuse this text or JSON value, if it would. JSON escapes smuggle in what a UTF-8 file
    cannot hold: NUL characters (\\u0000) and lone surrogates (\\ud800)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an invalid character (a lone surrogate such as \\ud800), which cannot be stored"
    return None


def _info_check(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise ApplicationError("Info must be a JSON object ({...}).", field="info")
    if reason := _unstorable(info):
        raise ApplicationError(f"Info {reason}.", field="info")
    return info


def _split_check(split: str) -> str:
    if split not in Split.values:
        raise ApplicationError(f"Unknown split {split!r} (use train or eval).", field="split")
    return split


@transaction.atomic
def example_create(
    *, task: Task, external_id: str, prompt: str = "", answer: str = "", split: str = Split.TRAIN,
    info: dict[str, Any] | None = None,
) -> Example:
    external_id = external_id.strip()
    if not external_id:
        raise ApplicationError("An example needs an id.", field="external_id")
    if task.examples.filter(external_id=external_id).exists():
        raise ApplicationError(f"An example with id {external_id!r} already exists in this task.",
                               field="external_id")
    return Example.objects.create(task=task, external_id=external_id, prompt=prompt, answer=answer,
                                  split=_split_check(split), info=_info_check(info or {}))


def _example_write(example: Example, row_version: int, values: dict[str, Any]) -> Example:
    updated = Example.objects.filter(pk=example.pk, row_version=row_version).update(
        **values, row_version=F("row_version") + 1)
    if not updated:
        current = Example.objects.filter(pk=example.pk).first()
        if current is None:
            raise ApplicationError("This example was deleted in the meantime.", status=404)
        raise ConflictError(
            "Someone saved this example after you opened it; your changes were not saved. The current values are "
            "shown below: save again to replace them with yours.",
            current={"row_version": current.row_version, "prompt": current.prompt, "answer": current.answer,
                     "split": current.split, "info": current.info},
        )
    example.refresh_from_db()
    return example


@transaction.atomic
def example_update(
    *, example: Example, row_version: int, prompt: str, answer: str, split: str, info: dict[str, Any],
) -> Example:
    values = {"prompt": prompt, "answer": answer, "split": _split_check(split), "info": _info_check(info)}
    return _example_write(example, row_version, values)


@transaction.atomic
def example_set_split(*, example: Example, row_version: int, split: str) -> Example:
    return _example_write(example, row_version, {"split": _split_check(split)})


@transaction.atomic
def example_delete(*, example: Example) -> None:
    example.delete()


@transaction.atomic
def examples_add(*, task: Task, examples: Iterable[ExampleData], batch_size: int = 1000) -> int:
    """Add examples atomically: a duplicate id (in the batch or already in the task) rejects the whole batch."""
    rows = list(examples)
    seen: dict[str, str] = {}
    for index, ex in enumerate(rows, start=1):
        where = ex.location or f"Example {index}"
        if not ex.external_id:
            raise ApplicationError(f"{where}: missing id.")
        if len(ex.external_id) > EXTERNAL_ID_MAX:
            raise ApplicationError(f"{where}: the id is longer than {EXTERNAL_ID_MAX} characters.")
        if ex.external_id in seen:
            raise ApplicationError(
                f"{where}: duplicate id {ex.external_id!r} (also on {seen[ex.external_id].lower()}). "
                "Nothing was imported.")
        if ex.split not in Split.values:
            raise ApplicationError(f"{where}: unknown split {ex.split!r} (use train or eval).")
        for value in (ex.external_id, ex.prompt, ex.answer, ex.info, ex.messages):
            if reason := _unstorable(value):
                raise ApplicationError(f"{where}: {reason}.")
        seen[ex.external_id] = where
    existing: set[str] = set()
    ids = list(seen)
    for start in range(0, len(ids), 10_000):
        existing.update(task.examples.filter(external_id__in=ids[start : start + 10_000])
                        .values_list("external_id", flat=True))
    if existing:
        first = next(ex for ex in rows if ex.external_id in existing)
        raise ApplicationError(
            f"{first.location or 'Example'}: id {first.external_id!r} already exists in this task"
            f"{f' ({len(existing)} ids in all)' if len(existing) > 1 else ''}. Nothing was imported.")
    try:
        with transaction.atomic():
            Example.objects.bulk_create(
                [
                    Example(task=task, external_id=ex.external_id, prompt=ex.prompt, answer=ex.answer,
                            split=ex.split, info=ex.info, messages=ex.messages)
                    for ex in rows
                ],
                batch_size=batch_size,
            )
    except IntegrityError:
        # Someone added some of these ids between the check above and the insert (e.g. two imports at once).
        raise ApplicationError("Some of these ids were added to the task by someone else a moment ago. "
                               "Nothing was imported; try again.", status=409) from None
    return len(rows)


# --- imports: upload → mapping preview → confirm -------------------------------------------------------------------


def import_max_bytes() -> int:
    return settings.RUBRICON_MAX_IMPORT_MB * 1024 * 1024


def _imports_dir() -> Path:
    return Path(settings.MEDIA_ROOT) / "imports"


@dataclass(frozen=True)
class StagedImport:
    token: str
    path: Path
    filename: str
    format: FileFormat
    size: int


def _staged_cleanup(now: float) -> None:
    root = _imports_dir()
    if not root.is_dir():
        return
    for entry in root.iterdir():
        try:
            if now - entry.stat().st_mtime > IMPORT_TTL_S:
                shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            continue


def example_import_stage(*, task: Task, user: Any, upload: UploadedFile) -> StagedImport:
    """Keep the upload under MEDIA_ROOT/imports/<token>/ until the user confirms the mapping. Writes no rows.

    The size is checked on the upload object before a byte is copied: Django has already streamed a large upload
    to a temporary file (never into memory), so refusing it here costs nothing more."""
    limit = import_max_bytes()
    if upload.size is not None and upload.size > limit:
        raise ApplicationError(
            f"The file is {upload.size / 1024 / 1024:.0f} MB; imports are limited to {limit // (1024 * 1024)} MB. "
            "Split it into smaller files and import them one after another.", field="file", status=413)
    _staged_cleanup(time.time())
    token = secrets.token_urlsafe(24)
    folder = _imports_dir() / token
    folder.mkdir(parents=True)
    path = folder / "upload"
    try:
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        fmt = imports.detect_format(path, upload.name or "")
        meta_data = {"user_id": user.pk, "task_id": task.pk, "filename": upload.name or "upload",
                     "format": fmt.value, "size": path.stat().st_size}
        (folder / "meta.json").write_text(json.dumps(meta_data))
        imports.read_preview(path, fmt, meta_data["filename"])  # a file that cannot even show a preview stops here
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return StagedImport(token=token, path=path, filename=meta_data["filename"], format=fmt, size=meta_data["size"])


def example_import_get(*, task: Task, user: Any, token: str) -> StagedImport:
    """The staged upload, only for the user and task that uploaded it."""
    folder = _imports_dir() / token if _TOKEN_RE.match(token or "") else None
    try:
        meta_data = json.loads((folder / "meta.json").read_text()) if folder else None
    except (FileNotFoundError, json.JSONDecodeError):
        meta_data = None
    if folder is None or not meta_data or meta_data.get("user_id") != user.pk or meta_data.get("task_id") != task.pk:
        raise ApplicationError("This upload has expired or belongs to someone else; upload the file again.",
                               status=404)
    return StagedImport(token=token, path=folder / "upload", filename=meta_data["filename"],
                        format=FileFormat(meta_data["format"]), size=meta_data["size"])


def example_import_discard(*, staged: StagedImport) -> None:
    shutil.rmtree(staged.path.parent, ignore_errors=True)


def example_import_preview(*, staged: StagedImport) -> imports.Preview:
    return imports.read_preview(staged.path, staged.format, staged.filename)


@dataclass(frozen=True)
class ImportMapping:
    roles: dict[str, ColumnRole]  # column name -> role, for the columns shown in the preview
    unknown_columns: ColumnRole = ColumnRole.INFO  # columns seen only after the preview: INFO or IGNORE
    default_split: str = Split.TRAIN


def import_mapping_check(mapping: ImportMapping) -> None:
    for role in imports.SINGLE_ROLES:
        columns = [c for c, r in mapping.roles.items() if r == role]
        if len(columns) > 1:
            raise ApplicationError(
                f"Columns {columns[0]!r} and {columns[1]!r} are both mapped to {imports.ROLE_LABELS[role].lower()}; "
                "choose one.", field="mapping")
    chosen = set(mapping.roles.values())
    if ColumnRole.PROMPT not in chosen and ColumnRole.MESSAGES not in chosen:
        raise ApplicationError("Choose the column that holds the prompt (or the chat messages).", field="mapping")
    if mapping.default_split not in Split.values:
        raise ApplicationError(f"Unknown split {mapping.default_split!r}.", field="default_split")


def _example_from_row(row: imports.Row, mapping: ImportMapping, fmt: FileFormat) -> ExampleData:
    where = f"{imports.where(fmt).capitalize()} {row.line}"
    data: dict[str, Any] = {"split": mapping.default_split, "info": {}, "location": where}
    id_column = next((c for c, r in mapping.roles.items() if r == ColumnRole.ID), None)
    for column, value in row.values.items():
        role = mapping.roles.get(column, mapping.unknown_columns)
        if role == ColumnRole.ID:
            data["external_id"] = imports.cell_text(value, fmt=fmt, line=row.line, column=column, what="id").strip()
            if not data["external_id"]:
                raise ApplicationError(f"{where}, column {column!r}: the id is empty.", field="file")
        elif role in (ColumnRole.PROMPT, ColumnRole.ANSWER):
            data[role.value] = imports.cell_text(value, fmt=fmt, line=row.line, column=column, what=role.value)
        elif role == ColumnRole.SPLIT:
            if value not in (None, ""):
                data["split"] = imports.cell_split(value, fmt=fmt, line=row.line, column=column)
        elif role == ColumnRole.MESSAGES:
            data["messages"] = imports.cell_messages(value, fmt=fmt, line=row.line, column=column)
        elif role == ColumnRole.INFO:
            data["info"][column] = value
    if id_column is None:
        data["external_id"] = f"row-{row.line}"
    elif "external_id" not in data:
        raise ApplicationError(f"{where}: no value for the id column {id_column!r}.", field="file")
    return ExampleData(**data)


def _staged_sha256(staged: StagedImport) -> str:
    with open(staged.path, "rb") as handle:
        return file_sha256(handle)


def example_import_seen(*, task: Task, staged: StagedImport) -> ApplicationError | None:
    """The 'already imported as #N' error this staged file would get, to warn on the preview page."""
    found = ImportRecord.objects.filter(project_id=task.project_id, scope=import_scope(kind="examples", task=task),
                                        sha256=_staged_sha256(staged)).order_by("id").first()
    return AlreadyImported(found, by_key=False) if found is not None else None


@transaction.atomic
def examples_import(*, task: Task, staged: StagedImport, mapping: ImportMapping, user: Any = None,
                    allow_duplicate: bool = False) -> int:
    """Read the whole staged file with the mapping, then write every example or none; a file already imported into
    this task is refused ('already imported as import #N') unless `allow_duplicate`."""
    import_mapping_check(mapping)
    record = import_claim(project=task.project, kind="examples", task=task, sha256=_staged_sha256(staged),
                          filename=staged.filename, user=user, allow_duplicate=allow_duplicate)
    examples = [_example_from_row(row, mapping, staged.format)
                for row in imports.iter_rows(staged.path, staged.format, staged.filename)]
    if not examples:
        raise ApplicationError("The file has no rows.", field="file")
    count = examples_add(task=task, examples=examples)
    import_done(record=record, summary=f"{count} examples")
    transaction.on_commit(lambda: example_import_discard(staged=staged))
    return count
