from __future__ import annotations

from django.db.models import QuerySet

from webapp.core.models import Project
from webapp.runs.models import TrainingRun


def run_list(project: Project) -> QuerySet[TrainingRun]:
    return project.training_runs.select_related("created_by", "task", "rubric_version__rubric").order_by("-id")
