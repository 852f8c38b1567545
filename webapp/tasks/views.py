from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.models import Project
from webapp.core.pagination import keyset_page, parse_cursor
from webapp.core.permissions import Action, project_view
from webapp.tasks import selectors, services
from webapp.tasks.example_files import ColumnRole, FileFormat
from webapp.tasks.forms import (
    ExampleCreateForm,
    ExampleForm,
    ExampleSplitForm,
    ImportMappingForm,
    ImportUploadForm,
    TaskForm,
    conflict_form,
    field_rows,
    form_error,
)
from webapp.tasks.models import Example, Split, Task

DETAIL = "tasks/task_detail.html"
FORMAT_LABELS = {FileFormat.JSONL: "JSON Lines", FileFormat.CSV: "CSV", FileFormat.PARQUET: "Parquet"}


# --- tasks -------------------------------------------------------------------------------------------------------


@require_GET
@project_view(Action.VIEW)
def task_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "tasks/task_list.html", {"tasks": selectors.task_list(project)})


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def task_create(request: HttpRequest, project: Project) -> HttpResponse:
    form = TaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "row_version"}
        try:
            task = services.task_create(project=project, created_by=request.user, **data)
        except ApplicationError as error:
            form_error(form, error)
        else:
            messages.success(request, f"Task “{task.name}” created. Add examples or import a file.")
            return redirect("tasks:detail", project.pk, task.pk)
    status = 400 if form.errors else 200
    context = {"form": form, "task": None, "field_rows": field_rows(form, None)}
    return render(request, "tasks/task_form.html", context, status=status)


def _split_param(value: str | None) -> str:
    return value if value in Split.values else ""


def _examples_context(task: Task, *, split: str, before: int | None) -> dict:
    page = keyset_page(selectors.example_list(task, split=split or None), before=before)
    return {"task": task, "page": page, "split": split, "splits": Split.choices}


@require_GET
@project_view(Action.VIEW)
def task_detail(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    split = _split_param(request.GET.get("split"))
    context = _examples_context(task, split=split, before=parse_cursor(request.GET.get("before")))
    context["add_form"] = ExampleCreateForm(initial={"split": split or Split.TRAIN})
    template = f"{DETAIL}#examples" if request.htmx else DETAIL
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def task_edit(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    current = None
    if request.method == "GET":
        form = TaskForm(initial={f: getattr(task, f) for f in (*services.TASK_EDITABLE, "row_version")})
    else:
        form = TaskForm(request.POST)
        if form.is_valid():
            data = {**form.cleaned_data, "row_version": form.cleaned_data["row_version"] or 0}
            try:
                services.task_update(task=task, **data)
            except ConflictError as error:
                form, current = conflict_form(TaskForm, request.POST, error)
            except ApplicationError as error:
                form_error(form, error)
            else:
                messages.success(request, "Task saved.")
                return redirect("tasks:detail", project.pk, task.pk)
    status = 409 if current else 400 if form.errors else 200
    context = {"form": form, "task": task, "field_rows": field_rows(form, current)}
    return render(request, "tasks/task_form.html", context, status=status)


@require_POST
@project_view(Action.EDIT)
def task_delete(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    name = task.name
    try:
        services.task_delete(task=task)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("tasks:edit", project.pk, task.pk)
    messages.success(request, f"Task “{name}” and its examples were deleted.")
    return redirect("tasks:list", project.pk)


# --- examples (htmx fragments of the task page) ---------------------------------------------------------------------


def _row(request: HttpRequest, task: Task, example: Example, *, error: str = "") -> HttpResponse:
    context = {"task": task, "ex": example, "row_error": error, "splits": Split.choices}
    return render(request, f"{DETAIL}#example_row", context)


def _edit_row(request: HttpRequest, task: Task, example: Example, form, *, current=None,
              status: int = 200) -> HttpResponse:
    context = {"task": task, "ex": example, "form": form, "field_rows": field_rows(form, current)}
    if request.htmx:
        # htmx swaps only 2xx answers, so the fragment with the errors goes out as 200.
        return render(request, f"{DETAIL}#example_edit_row", context)
    return render(request, "tasks/example_edit.html", context, status=status)


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def example_add(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    form = ExampleCreateForm(request.POST or None, initial={"split": Split.TRAIN})
    if request.method == "POST" and form.is_valid():
        try:
            example = services.example_create(task=task, **form.cleaned_data)
        except ApplicationError as error:
            form_error(form, error)
        else:
            if not request.htmx:
                messages.success(request, f"Example {example.external_id} added.")
                return redirect("tasks:detail", project.pk, task.pk)
            # The table (now with the new row) plus a fresh, empty add form swapped out of band.
            split = _split_param(request.POST.get("list_split"))
            context = _examples_context(task, split=split, before=None)
            fresh = ExampleCreateForm(initial={"split": split or Split.TRAIN})
            html = (render_to_string(f"{DETAIL}#examples", context, request)
                    + render_to_string(f"{DETAIL}#example_add_form",
                                       {"task": task, "add_form": fresh, "split": split, "oob": True}, request))
            return HttpResponse(html)
    context = {"task": task, "add_form": form, "split": _split_param(request.POST.get("list_split"))}
    if request.htmx:
        return reswap(retarget(render(request, f"{DETAIL}#example_add_form", context), "#example-add"), "outerHTML")
    return render(request, "tasks/example_add.html", context, status=400 if form.errors else 200)


@require_GET
@project_view(Action.VIEW)
def example_row(request: HttpRequest, project: Project, task_id: int, example_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    return _row(request, task, selectors.example_get(task, example_id))


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def example_edit(request: HttpRequest, project: Project, task_id: int, example_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    example = selectors.example_get(task, example_id)
    auto_id = f"id_example{example.pk}_%s"
    if request.method == "GET":
        form = ExampleForm(initial={"prompt": example.prompt, "answer": example.answer, "split": example.split,
                                    "info": example.info, "row_version": example.row_version}, auto_id=auto_id)
        return _edit_row(request, task, example, form)
    form = ExampleForm(request.POST, auto_id=auto_id)
    if form.is_valid():
        try:
            example = services.example_update(example=example, **form.cleaned_data)
        except ConflictError as error:
            form, current = conflict_form(ExampleForm, request.POST, error, auto_id=auto_id)
            return _edit_row(request, task, example, form, current=current, status=409)
        except ApplicationError as error:
            form_error(form, error)
        else:
            if request.htmx:
                return _row(request, task, example)
            messages.success(request, f"Example {example.external_id} saved.")
            return redirect("tasks:detail", project.pk, task.pk)
    return _edit_row(request, task, example, form, status=400)


@require_POST
@project_view(Action.EDIT)
def example_split(request: HttpRequest, project: Project, task_id: int, example_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    example = selectors.example_get(task, example_id)
    form = ExampleSplitForm(request.POST)
    if not form.is_valid():
        return _row(request, task, example, error="Choose train or eval.")
    try:
        example = services.example_set_split(example=example, **form.cleaned_data)
    except ConflictError as error:
        example.refresh_from_db()
        return _row(request, task, example, error=f"Not changed: someone edited this example meanwhile; it is "
                                                  f"now in {error.extra['current']['split']}.")
    if request.htmx:
        return _row(request, task, example)
    return redirect("tasks:detail", project.pk, task.pk)


@require_POST
@project_view(Action.EDIT)
def example_delete(request: HttpRequest, project: Project, task_id: int, example_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    example = selectors.example_get(task, example_id)
    services.example_delete(example=example)
    if request.htmx:
        return HttpResponse("")
    messages.success(request, f"Example {example.external_id} deleted.")
    return redirect("tasks:detail", project.pk, task.pk)


# --- import: upload → mapping preview → confirm -------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def import_upload(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    form = ImportUploadForm(request.POST or None, request.FILES or None, max_bytes=services.import_max_bytes())
    if request.method == "POST" and form.is_valid():
        try:
            staged = services.example_import_stage(task=task, user=request.user, upload=form.cleaned_data["file"])
        except ApplicationError as error:
            form_error(form, error)
        else:
            url = reverse("tasks:import_preview", args=[project.pk, task.pk]) + f"?token={staged.token}"
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    context = {"task": task, "form": form, "max_mb": services.import_max_bytes() // (1024 * 1024)}
    return render(request, "tasks/import_upload.html", context, status=400 if form.errors else 200)


def _mapping_page(request: HttpRequest, task: Task, staged, form: ImportMappingForm | None = None,
                  *, status: int = 200) -> HttpResponse:
    preview = services.example_import_preview(staged=staged)
    form = form or ImportMappingForm(initial={"token": staged.token}, columns=preview.columns)
    rows = [(row.line, [row.values.get(column, "") for column in preview.columns]) for row in preview.rows]
    context = {"task": task, "staged": staged, "form": form, "preview": preview, "rows": rows,
               "format_label": FORMAT_LABELS[staged.format],
               "imported_before": services.example_import_seen(task=task, staged=staged)}
    return render(request, "tasks/import_preview.html", context, status=status)


@require_GET
@project_view(Action.EDIT)
def import_preview(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    staged = services.example_import_get(task=task, user=request.user, token=request.GET.get("token", ""))
    return _mapping_page(request, task, staged)


@require_POST
@project_view(Action.EDIT)
def import_confirm(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    staged = services.example_import_get(task=task, user=request.user, token=request.POST.get("token", ""))
    preview = services.example_import_preview(staged=staged)
    form = ImportMappingForm(request.POST, columns=preview.columns)
    if form.is_valid():
        mapping = services.ImportMapping(roles=form.roles(),
                                         unknown_columns=ColumnRole(form.cleaned_data["unknown_columns"]),
                                         default_split=form.cleaned_data["default_split"])
        try:
            count = services.examples_import(task=task, staged=staged, mapping=mapping, user=request.user,
                                             allow_duplicate=form.cleaned_data["allow_duplicate"])
        except ApplicationError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"Imported {count} examples from {staged.filename}.")
            return redirect("tasks:detail", project.pk, task.pk)
    return _mapping_page(request, task, staged, form, status=400)


@require_POST
@project_view(Action.EDIT)
def import_cancel(request: HttpRequest, project: Project, task_id: int) -> HttpResponse:
    task = selectors.task_get(project, task_id)
    try:
        staged = services.example_import_get(task=task, user=request.user, token=request.POST.get("token", ""))
    except ApplicationError:
        pass  # already gone
    else:
        services.example_import_discard(staged=staged)
    return redirect("tasks:detail", project.pk, task.pk)
