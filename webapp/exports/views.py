from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Project
from webapp.core.permissions import Action, project_view, role_allows
from webapp.core.visibility import scores_page
from webapp.exports import selectors, services
from webapp.exports.forms import ExportForm, HubPushForm, ImportForm, ReasoningGymForm, VerifiersTaskForm
from webapp.exports.hub import hub_push_create
from webapp.exports.import_datasets import dataset_import
from webapp.exports.models import Export
from webapp.exports.sources import reasoning_gym_datasets, reasoning_gym_import
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.reviews.blind import request_blindness
from webapp.rollouts.pickers import selection_display, selection_names
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.tasks.models import Task


def _page(request: HttpRequest, project: Project, form: ExportForm | None = None, import_form: ImportForm | None = None,
          push_form: HubPushForm | None = None, rg_form: ReasoningGymForm | None = None,
          vf_form: VerifiersTaskForm | None = None, status: int = 200) -> HttpResponse:
    exports = list(selectors.export_list(project).prefetch_related("hub_pushes")[:100])
    pushable = [e for e in exports if e.status == JobStatus.SUCCEEDED and e.file]
    for export in exports:
        export.pushes_shown = sorted(export.hub_pushes.all(), key=lambda p: -p.pk)[:5]
    names = selection_names(project=project, selections=[e.filters for e in exports])
    for export in exports:
        export.filters_shown = selection_display(export.filters, names)
    context = {
        "exports": exports,
        "form": form or ExportForm(project=project, initial={"kind": "rollouts", "format": "jsonl"}),
        "import_form": import_form or ImportForm(project=project, initial={"format": "jsonl", "kind": "rollouts"}),
        "can_edit": role_allows(request.project_role, Action.EDIT),
        "push_form": push_form or HubPushForm(exports=pushable, initial={"private": True, "token_env": "HF_TOKEN"}),
        "rg_form": rg_form,  # unbound, it comes from reasoning_gym_form_view: listing datasets imports reasoning-gym
        "vf_form": vf_form or VerifiersTaskForm(initial={"taskset": {"id": "rubricon_wordle"}, "count": 10,
                                                         "max_turns": 6}),
        "verifiers_plugins": ", ".join(settings.RUBRICON_VERIFIERS_PLUGINS),
        "can_push": bool(pushable) and not request_blindness(request).active,
        "polling": any(e.status in (JobStatus.PENDING, JobStatus.RUNNING)
                       or any(p.status in (JobStatus.PENDING, JobStatus.RUNNING) for p in e.pushes_shown)
                       for e in exports),
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


@require_POST
@project_view(Action.EDIT)
@scores_page
def export_push(request: HttpRequest, project: Project) -> HttpResponse:
    """Push a finished export to the Hugging Face Hub (a background job; the table shows its state)."""
    pushable = [e for e in selectors.export_list(project)[:100] if e.status == JobStatus.SUCCEEDED and e.file]
    form = HubPushForm(request.POST, exports=pushable)
    if not form.is_valid():
        return _page(request, project, push_form=form, status=400)
    export = get_object_or_404(Export, project=project, pk=form.cleaned_data["export"])
    try:
        push = hub_push_create(export=export, repo_id=form.cleaned_data["repo_id"],
                               token_env=form.cleaned_data["token_env"], private=form.cleaned_data["private"],
                               created_by=request.user)
    except ApplicationError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return _page(request, project, push_form=form, status=400)
    messages.success(request, f"Push of export #{export.pk} to {push.repo_id} queued; this page shows its state.")
    return redirect("exports:list", project_id=project.pk)


def _reasoning_gym_form() -> ReasoningGymForm:
    return ReasoningGymForm(datasets=reasoning_gym_datasets(), initial={
        "dataset": "basic_arithmetic", "size": 100, "seed": 42, "eval_size": 0, "with_rubric": True})


@require_GET
@project_view(Action.VIEW)
def reasoning_gym_form_view(request: HttpRequest, project: Project) -> HttpResponse:
    """The reasoning-gym form, loaded by the exports page after it is shown: listing the datasets imports
    reasoning-gym and every dataset module (seconds, once per web process), which the page itself should not wait for."""
    return render(request, "exports/_reasoning_gym_form.html", {"project": project, "rg_form": _reasoning_gym_form()})


@require_POST
@project_view(Action.EDIT)
def reasoning_gym_import_view(request: HttpRequest, project: Project) -> HttpResponse:
    """Generate a task (and its scoring rubric) from a reasoning-gym dataset."""
    form = ReasoningGymForm(request.POST, datasets=reasoning_gym_datasets())
    if not form.is_valid():
        return _page(request, project, rg_form=form, status=400)
    data = form.cleaned_data
    try:
        result = reasoning_gym_import(
            project=project, dataset=data["dataset"], size=data["size"], seed=data["seed"], config=data["config"],
            task_name=data["task_name"], eval_size=data["eval_size"] or 0, with_rubric=data["with_rubric"],
            user=request.user)
    except ApplicationError as error:
        form.add_error(error.field if error.field in form.fields else None, f"Nothing was created: {error.message}")
        return _page(request, project, rg_form=form, status=400)
    messages.success(request, f"Generated {result.summary()}.")
    return redirect("tasks:detail", project_id=project.pk, task_id=result.task.pk)


@require_POST
@project_view(Action.EDIT)
def verifiers_task_view(request: HttpRequest, project: Project) -> HttpResponse:
    """Create a task backed by a verifiers taskset; generation jobs on it run verifiers' episode loop."""
    form = VerifiersTaskForm(request.POST)
    if not form.is_valid():
        return _page(request, project, vf_form=form, status=400)
    data = form.cleaned_data
    try:
        task = verifiers_task_create(project=project, name=data["name"], taskset=data["taskset"],
                                     harness=data["harness"] or None, count=data["count"],
                                     max_turns=data["max_turns"], created_by=request.user)
    except ApplicationError as error:
        form.add_error(None, f"Nothing was created: {error.message}")
        return _page(request, project, vf_form=form, status=400)
    messages.success(request, f"Task {task.name!r} is backed by the verifiers taskset "
                              f"{task.environment_config['taskset']['id']!r}; start a generation job on it.")
    return redirect("tasks:detail", project_id=project.pk, task_id=task.pk)
