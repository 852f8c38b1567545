from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.tasks.models import Example, Task


def task_list(project: Project) -> QuerySet[Task]:
    return project.tasks.annotate(
        example_count=Count("examples"),
        train_count=Count("examples", filter=Q(examples__split="train")),
        eval_count=Count("examples", filter=Q(examples__split="eval")),
    ).order_by("name")


def task_get(project: Project, task_id: int) -> Task:
    return get_object_or_404(Task, project=project, pk=task_id)


def example_list(task: Task, *, split: str | None = None) -> QuerySet[Example]:
    examples = task.examples.all()
    if split:
        examples = examples.filter(split=split)
    return examples


def example_get(task: Task, example_id: int) -> Example:
    return get_object_or_404(Example, task=task, pk=example_id)


def tasks_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "tasks": Task.objects.filter(project=project).count(),
            "examples": Example.objects.filter(task__project=project).count(),
    }
