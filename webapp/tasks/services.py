from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.tasks.models import Example, Split, Task, TaskKind


@dataclass(frozen=True)
class ExampleData:
    external_id: str
    prompt: str = ""
    answer: str = ""
    split: str = Split.TRAIN
    info: dict = field(default_factory=dict)
    messages: list | None = None


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
    created_by=None,
) -> Task:
    name = name.strip()
    if not name:
        raise ApplicationError("A task needs a name.", field="name")
    if Task.objects.filter(project=project, name=name).exists():
        raise ApplicationError(f"A task named {name!r} already exists in this project.", field="name")
    return Task.objects.create(
        project=project, name=name, instructions=instructions, system_prompt=system_prompt,
        prompt_template=prompt_template, kind=kind, environment=environment, created_by=created_by,
    )


@transaction.atomic
def examples_add(*, task: Task, examples: Iterable[ExampleData], batch_size: int = 1000) -> int:
    """Add examples atomically: a duplicate id (in the batch or already in the task) rejects the whole batch."""
    rows = list(examples)
    seen: set[str] = set()
    for line, ex in enumerate(rows, start=1):
        if not ex.external_id:
            raise ApplicationError(f"Example {line}: missing id.")
        if ex.external_id in seen:
            raise ApplicationError(f"Example {line}: duplicate id {ex.external_id!r}.")
        if ex.split not in Split.values:
            raise ApplicationError(f"Example {line}: unknown split {ex.split!r} (use train or eval).")
        seen.add(ex.external_id)
    existing = set(task.examples.filter(external_id__in=seen).values_list("external_id", flat=True))
    if existing:
        raise ApplicationError(f"{len(existing)} example id(s) already exist in this task, e.g. {sorted(existing)[0]!r}.")
    Example.objects.bulk_create(
        [
            Example(task=task, external_id=ex.external_id, prompt=ex.prompt, answer=ex.answer, split=ex.split,
                    info=ex.info, messages=ex.messages)
            for ex in rows
        ],
        batch_size=batch_size,
    )
    return len(rows)
