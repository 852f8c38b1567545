from __future__ import annotations

from django.db.models import QuerySet

from webapp.core.models import Project
from webapp.exports.models import Export


def export_list(project: Project) -> QuerySet[Export]:
    return project.exports.select_related("created_by").order_by("-id")
