from __future__ import annotations

from django.db.models import QuerySet

from webapp.core.models import Project
from webapp.reviews.models import ReviewQueue


def queue_list(project: Project) -> QuerySet[ReviewQueue]:
    return project.review_queues.select_related("created_by", "rubric_version__rubric").order_by("-id")
