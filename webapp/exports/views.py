from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.exports import selectors


@require_GET
@project_view(Action.VIEW)
def export_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "exports/export_list.html", {"exports": selectors.export_list(project)[:100]})
