from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from training.rubrics.spec import RubricSpec, SpecError, validate_spec
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.tasks.models import Task


@transaction.atomic
def rubric_create(
    *, project: Project, name: str, spec: dict, author=None, task: Task | None = None, description: str = "",
    note: str = "Initial version",
) -> Rubric:
    name = name.strip()
    if not name:
        raise ApplicationError("A rubric needs a name.", field="name")
    if Rubric.objects.filter(project=project, name=name).exists():
        raise ApplicationError(f"A rubric named {name!r} already exists in this project.", field="name")
    if task is not None and task.project_id != project.pk:
        raise ApplicationError("That task belongs to another project.", field="task")
    rubric = Rubric.objects.create(project=project, name=name, task=task, description=description, created_by=author)
    rubric_version_create(rubric=rubric, spec=spec, author=author, note=note)
    return rubric


@transaction.atomic
def rubric_version_create(*, rubric: Rubric, spec: dict, author=None, note: str = "") -> RubricVersion:
    """Append an immutable version. Versions are never edited: scores and labels keep pointing at theirs."""
    rubric_spec_validate(spec)
    # Lock the rubric row so two concurrent saves get distinct numbers instead of a unique violation.
    Rubric.objects.select_for_update().filter(pk=rubric.pk).first()
    latest = rubric.versions.aggregate(n=Max("number"))["n"] or 0
    return RubricVersion.objects.create(rubric=rubric, number=latest + 1, spec=spec, author=author, note=note)


def rubric_spec_validate(spec: dict) -> RubricSpec:
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
