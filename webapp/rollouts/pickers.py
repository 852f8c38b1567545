"""Menus that name a project's tasks, generation jobs, training runs and rubric versions, for forms that select
rollouts (exports, review queues), and the same names for lists that show such a selection.

Forms never ask for a database id: a rubric's "v4" is rarely row 4, so a typed number silently picked another
version. The values stay ids (what services and the API take); only what the user reads and picks changes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.db.models import QuerySet

from webapp.core.models import Project
from webapp.rollouts.models import GenerationJob
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.tasks.models import Task

# Longer lists stay one select, newest first; a value older than this still shows when it is the one chosen.
PICKER_LIMIT = 200
PICKED = ("task", "job", "run", "rubric_version")


def _id(value: Any) -> int | None:
    """A positive id from a form value or stored filter; anything else (text, "²", huge numbers) is None."""
    if isinstance(value, bool):
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number < 2**63 else None


def _querysets(project: Project) -> dict[str, QuerySet]:
    return {
        "task": Task.objects.filter(project=project).order_by("-id"),
        "job": GenerationJob.objects.filter(project=project).select_related("task").order_by("-id"),
        "run": project.training_runs.order_by("-id"),  # runs sits above rollouts: read through the relation
        "rubric_version": rubric_versions_of_project(project),
    }


def picker_label(name: str, obj: Any) -> str:
    """What a user reads for one task, job, run or rubric version."""
    if name == "job":
        model = f" · {obj.model_name}" if obj.model_name else ""
        return f"generation #{obj.pk} · {obj.task.name}{model} · {obj.created_at:%Y-%m-%d %H:%M}"
    return str(obj)  # task and run: their name; rubric version: "Rubric name vN"


def picker_choices(*, project: Project, name: str, include: Iterable[Any] = ()) -> list[tuple[int, str]]:
    """The newest PICKER_LIMIT rows of the project, plus the rows whose ids are in `include` (a chosen value)."""
    queryset = _querysets(project)[name]
    rows = list(queryset[:PICKER_LIMIT])
    shown = {row.pk for row in rows}
    wanted = {i for i in map(_id, include) if i is not None and i not in shown}
    if wanted:
        rows += list(queryset.filter(pk__in=wanted))
    return [(row.pk, picker_label(name, row)) for row in rows]


def picker_field(*, project: Project, name: str, label: str, help_text: str = "", include: Iterable[Any] = (),
                 empty_label: str = "Any") -> forms.TypedChoiceField:
    return forms.TypedChoiceField(
        required=False, label=label, help_text=help_text, coerce=int, empty_value=None,
        choices=[("", empty_label), *picker_choices(project=project, name=name, include=include)],
    )


def picked_values(name: str, *sources: Any) -> list[Any]:
    """The value of field `name` in a form's data and initial (QueryDicts or dicts), to keep it in the menu."""
    return [source.get(name) for source in sources if source and source.get(name) not in (None, "")]


def selection_names(*, project: Project, selections: Iterable[dict]) -> dict[tuple[str, int], str]:
    """(filter name, id) -> label for every task, job, run and rubric version named in `selections`,
    in one query per kind."""
    ids: dict[str, set[int]] = {name: set() for name in PICKED}
    for selection in selections:
        for name in PICKED:
            value = _id((selection or {}).get(name))
            if value is not None:
                ids[name].add(value)
    querysets = _querysets(project)
    return {
        (name, row.pk): picker_label(name, row)
        for name, wanted in ids.items() if wanted
        for row in querysets[name].filter(pk__in=wanted)
    }


def selection_display(selection: dict, names: dict[tuple[str, int], str]) -> list[tuple[str, str]]:
    """(filter, value as read) pairs of one selection: ids replaced by names; an id that no longer exists
    in the project stays visible as `#id (deleted)`."""
    out = []
    for key, value in (selection or {}).items():
        if key in PICKED and _id(value) is not None:
            out.append((key.replace("_", " "), names.get((key, _id(value)), f"#{value} (deleted)")))
        elif isinstance(value, list):
            out.append((key.replace("_", " "), f"{len(value)} chosen"))
        else:
            out.append((key.replace("_", " "), str(value)))
    return out
