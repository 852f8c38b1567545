from __future__ import annotations

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Project
from webapp.core.permissions import Action, project_view, role_allows
from webapp.core.visibility import scores_page
from webapp.exports import selectors, services
from webapp.exports.forms import ExportForm, ImportForm
from webapp.exports.import_datasets import dataset_import
from webapp.exports.models import Export
from webapp.rollouts.pickers import selection_display, selection_names
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.tasks.models import Task


def _page(request: HttpRequest, project: Project, form: ExportForm | None = None, import_form: ImportForm | None = None,
          status: int = 200) -> HttpResponse:
    exports = list(selectors.export_list(project)[:100])
    names = selection_names(project=project, selections=[e.filters for e in exports])
    for export in exports:
        export.filters_shown = selection_display(export.filters, names)
    context = {
        "exports": exports,
        "form": form or ExportForm(project=project, initial={"kind": "rollouts", "format": "jsonl"}),
        "import_form": import_form or ImportForm(project=project, initial={"format": "jsonl", "kind": "rollouts"}),
        "can_edit": role_allows(request.project_role, Action.EDIT),
        "polling": any(e.status in (JobStatus.PENDING, JobStatus.RUNNING) for e in exports),
    }
    template = "exports/export_list.html#export-table" if request.htmx else "exports/export_list.html"
    return render(request, template, context, status=status)


@require_GET
@project_view(Action.VIEW)
def export_list(request: HttpRequest, project: Project) -> HttpResponse:
    return _page(request, project)


@require_POST
@project_view(Action.EDIT)
def export_create(request: HttpRequest, project: Project) -> HttpResponse:
    form = ExportForm(request.POST, project=project)
    if not form.is_valid():
        return _page(request, project, form=form, status=400)
    try:
        export = services.export_create(
            project=project, kind=form.cleaned_data["kind"], format=form.cleaned_data["format"],
            filters=form.filters(), created_by=request.user,
        )
    except ApplicationError as error:
        form.add_error(None, error.message)
        return _page(request, project, form=form, status=400)
    messages.success(request, f"Export #{export.pk} queued; this page shows its progress.")
    return redirect("exports:list", project_id=project.pk)


@require_GET
@project_view(Action.VIEW)
@scores_page
def export_download(request: HttpRequest, project: Project, export_id: int) -> FileResponse:
    export = get_object_or_404(Export.objects.select_related("project"), project=project, pk=export_id)
    if not export.file:
        raise Http404("This export has no file yet.")
    return FileResponse(export.file.open("rb"), as_attachment=True, filename=services.download_name(export))


@require_POST
@project_view(Action.EDIT)
def export_cancel(request: HttpRequest, project: Project, export_id: int) -> HttpResponse:
    export = get_object_or_404(Export, project=project, pk=export_id)
    if services.export_cancel(export=export):
        messages.success(request, f"Export #{export.pk} cancelled.")
    if request.htmx:
        return _page(request, project)
    return redirect("exports:list", project_id=project.pk)


@require_POST
@project_view(Action.EDIT)
def rollouts_import_view(request: HttpRequest, project: Project) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES, project=project)
    if not form.is_valid():
        return _page(request, project, import_form=form, status=400)
    data = form.cleaned_data
    task = get_object_or_404(Task, project=project, pk=data["task"]) if data.get("task") else None
    version = None
    if data.get("rubric_version"):
        version = get_object_or_404(rubric_versions_of_project(project), pk=data["rubric_version"])
    try:
        result = dataset_import(project=project, stream=data["file"], kind=data["kind"] or "rollouts",
                                format=data["format"], task=task, rubric_version=version, user=request.user,
                                metadata=data.get("metadata"), allow_duplicate=data.get("allow_duplicate", False))
    except ApplicationError as error:
        form.add_error(None, f"Nothing was imported: {error.message}")
        return _page(request, project, import_form=form, status=400)
    messages.success(request, f"Imported {result.summary()}.")
    return redirect("exports:list", project_id=project.pk)
