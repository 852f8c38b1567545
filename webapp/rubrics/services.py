from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from training.rubrics.spec import RubricSpec, SpecError, validate_spec
from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.models import Project
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.rubrics.specs import spec_diff
from webapp.tasks.models import Task

RESTORED_NOTE = "Restored from v{number}"
NOTE_MAX = RubricVersion._meta.get_field("note").max_length or 500


def _meta_errors(*, project: Project, name: str, task: Task | None, rubric: Rubric | None = None) -> list[dict[str, Any]]:
    errors = []
    if not name:
        errors.append({"path": "name", "message": "A rubric needs a name."})
    elif Rubric.objects.filter(project=project, name=name).exclude(pk__in=[] if rubric is None else [rubric.pk]).exists():
        errors.append({"path": "name", "message": f"A rubric named {name!r} already exists in this project."})
    if task is not None and task.project_id != project.pk:
        errors.append({"path": "task", "message": "That task belongs to another project."})
    return errors


def _raise_errors(errors: list[dict[str, Any]]) -> None:
    if errors:
        first = errors[0]
        message = first["message"] if first["path"] in ("name", "task") else (
            f"Invalid rubric: {first['path'] or 'spec'}: {first['message']}")
        raise ApplicationError(message, field=first["path"] or None, extra={"errors": errors})


@transaction.atomic
def rubric_create(
    *, project: Project, name: str, spec: dict[str, Any], author: Any = None, task: Task | None = None, description: str = "",
    note: str = "Initial version",
) -> Rubric:
    """Create a rubric and its v1. Every problem (name, task, spec) is reported at once, with its field path."""
    name = name.strip()
    _raise_errors(_meta_errors(project=project, name=name, task=task) + rubric_spec_errors(spec))
    rubric = Rubric.objects.create(project=project, name=name, task=task, description=description, created_by=author)
    rubric_version_create(rubric=rubric, spec=spec, author=author, note=note or "Initial version")
    return rubric


def _lock_latest(rubric: Rubric) -> RubricVersion | None:
    # Lock the rubric row so two concurrent saves get distinct numbers instead of a unique violation, and so the
    # stale-edit check below sees the truly latest version.
    Rubric.objects.select_for_update().filter(pk=rubric.pk).first()
    return rubric.versions.select_related("author").order_by("-number").first()


def _refuse_stale(latest: RubricVersion | None, base_number: int | None) -> None:
    if base_number is None or latest is None or latest.number == base_number:
        return
    who = latest.author.get_username() if latest.author else "someone"
    raise ConflictError(
        f"Not saved: v{latest.number} was saved by {who} after you opened v{base_number}. "
        f"Your edits are still in the form; compare v{base_number} with v{latest.number}, then save again to create "
        f"v{latest.number + 1} from your edits.",
        current={"number": latest.number, "base": base_number},
    )


@transaction.atomic
def rubric_version_create(
    *, rubric: Rubric, spec: dict[str, Any], author: Any = None, note: str = "", base_number: int | None = None
) -> RubricVersion:
    """Append an immutable version. Versions are never edited: scores and labels keep pointing at theirs.

    `base_number` is the version the author started from; if a newer one exists the save is refused (409)."""
    rubric_spec_validate(spec)
    latest = _lock_latest(rubric)
    _refuse_stale(latest, base_number)
    number = (latest.number if latest else 0) + 1
    return RubricVersion.objects.create(rubric=rubric, number=number, spec=spec, author=author, note=note[:NOTE_MAX])


@transaction.atomic
def rubric_update(
    *, rubric: Rubric, name: str, description: str, task: Task | None, spec: dict[str, Any], author: Any = None, note: str = "",
    base_number: int | None,
) -> RubricVersion | None:
    """Save the editor: rubric details in place, the spec as a new version — only if it differs from the latest.

    Returns the new version, or None when the spec is unchanged. A blank note becomes a summary of the changes."""
    name = name.strip()
    _raise_errors(_meta_errors(project=rubric.project, name=name, task=task, rubric=rubric) + rubric_spec_errors(spec))
    latest = _lock_latest(rubric)
    _refuse_stale(latest, base_number)
    Rubric.objects.filter(pk=rubric.pk).update(name=name, description=description, task=task)
    rubric.name, rubric.description, rubric.task = name, description, task
    if latest is not None and spec_diff(latest.spec, spec).is_empty:
        return None
    if not note.strip():
        note = "Edited: " + spec_diff(latest.spec, spec).summary() if latest else "Initial version"
    return rubric_version_create(rubric=rubric, spec=spec, author=author, note=note.strip(),
                                 base_number=latest.number if latest else None)


@transaction.atomic
def rubric_version_restore(*, version: RubricVersion, author: Any = None) -> RubricVersion:
    """A new version with an old version's spec. The old version and everything tied to it stay as they are."""
    latest = _lock_latest(version.rubric)
    if latest is not None and latest.pk == version.pk:
        raise ApplicationError(f"v{version.number} is already the latest version.")
    return rubric_version_create(rubric=version.rubric, spec=version.spec, author=author,
                                 note=RESTORED_NOTE.format(number=version.number))


def rubric_spec_errors(spec: object) -> list[dict[str, Any]]:
    """Every problem in a spec as {"path": "criteria.1.pattern", "message": ...}; empty when valid."""
    try:
        validate_spec(spec, python_allowlist=settings.RUBRICON_PYTHON_REWARD_ALLOWLIST)
    except SpecError as error:
        return list(error.errors) or [{"path": "", "message": str(error)}]
    return []


def rubric_editor_errors(
    *, project: Project, rubric: Rubric | None, name: str, task: Task | None, spec: object
) -> list[dict[str, Any]]:
    """What saving the editor would refuse, without writing anything (the editor's live validation)."""
    return _meta_errors(project=project, name=name.strip(), task=task, rubric=rubric) + rubric_spec_errors(spec)


def rubric_spec_validate(spec: dict[str, Any]) -> RubricSpec:
    """Validate with the rubric engine; errors carry field paths (`criteria.1.pattern`) for the editor."""
    try:
        return validate_spec(spec, python_allowlist=settings.RUBRICON_PYTHON_REWARD_ALLOWLIST)
    except SpecError as error:
        first = error.errors[0] if error.errors else {"path": "", "message": str(error)}
        raise ApplicationError(
            f"Invalid rubric: {first['path'] or 'spec'}: {first['message']}",
            field=first["path"] or None,
            extra={"errors": error.errors},
        ) from error
