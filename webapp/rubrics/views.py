from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.models import Project
from webapp.core.params import parse_id, parse_int
from webapp.core.permissions import Action, project_view
from webapp.rubrics import editor, selectors, services
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.rubrics.services import rubric_spec_validate
from webapp.rubrics.specs import display_value, weight_shares
from webapp.tasks.models import Task

EDITOR = "rubrics/rubric_editor.html"


@require_GET
@project_view(Action.VIEW)
def rubric_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "rubrics/rubric_list.html", {"rubrics": selectors.rubric_list(project)})


def _detail(request: HttpRequest, rubric: Rubric, shown: RubricVersion | None,
            versions: list[RubricVersion]) -> HttpResponse:
    criteria = shown.criteria if shown else []
    weights = [c.get("weight", 1.0) for c in criteria]
    context = {
        "rubric": rubric, "versions": versions, "current": shown, "latest": versions[0] if versions else None,
        "criteria": list(zip(criteria, [display_value(w) for w in weights], weight_shares(weights), strict=True)),
    }
    return render(request, "rubrics/rubric_detail.html", context)


@require_GET
@project_view(Action.VIEW)
def rubric_detail(request: HttpRequest, project: Project, rubric_id: int) -> HttpResponse:
    rubric = selectors.rubric_get(project, rubric_id)
    versions = list(selectors.rubric_versions(rubric))
    return _detail(request, rubric, versions[0] if versions else None, versions)


@require_GET
@project_view(Action.VIEW)
def rubric_version_detail(request: HttpRequest, project: Project, rubric_id: int, number: int) -> HttpResponse:
    rubric = selectors.rubric_get(project, rubric_id)
    versions = list(selectors.rubric_versions(rubric))
    shown = next((v for v in versions if v.number == number), None)
    if shown is None:
        shown = selectors.rubric_version_by_number(rubric, number)  # 404
    return _detail(request, rubric, shown, versions)


# --- editor -------------------------------------------------------------------------------------------------------


def _task(project: Project, task_id: int | None) -> tuple[Task | None, list[dict]]:
    if task_id is None:
        return None, []
    task = selectors.rubric_task_choices(project).filter(pk=task_id).first()
    return task, [] if task else [{"path": "task", "message": "No such task in this project."}]


def _render_editor(request: HttpRequest, project: Project, form: editor.EditorInput, *, rubric: Rubric | None,
                   errors: list[dict] | None = None, checked: bool = False, conflict: ConflictError | None = None,
                   status: int = 200) -> HttpResponse:
    if rubric is None:
        action, validate_url = reverse("rubrics:create", args=[project.pk]), reverse("rubrics:validate", args=[project.pk])
    else:
        action = reverse("rubrics:edit", args=[project.pk, rubric.pk])
        validate_url = reverse("rubrics:validate_rubric", args=[project.pk, rubric.pk])
    context = {
        "rubric": rubric, "view": editor.editor_view(form, errors or []), "action": action,
        "validate_url": validate_url, "checked": checked, "conflict": conflict,
        "tasks": selectors.rubric_task_choices(project), "kinds": editor.KIND_LABELS,
        "options": {"extract": editor.MATCH_EXTRACTS, "mode": editor.MATCH_MODES, "check": editor.FORMAT_CHECKS,
                    "json_extract": editor.JSON_EXTRACTS, "unit": editor.LENGTH_UNITS},
        "python_allowlist": editor.python_allowlist(),
    }
    template = f"{EDITOR}#editor_form" if request.htmx else EDITOR
    return render(request, template, context, status=status)


def _editor_post(request: HttpRequest, project: Project, rubric: Rubric | None) -> HttpResponse:
    if "spec_json" in request.POST:  # opened from elsewhere (an AI draft) with a spec to review: nothing is saved
        form = editor.editor_from_json(request.POST)
        if rubric is not None:
            if "name" not in request.POST:
                form.name, form.description, form.task_id = rubric.name, rubric.description, rubric.task_id
            if form.base_number is None:
                latest = selectors.rubric_latest_version(rubric)
                form.base_number = latest.number if latest else None
        op = "check"
    else:
        form = editor.parse_editor(request.POST)
        op = request.POST.get("op") or "save"
    if op not in ("save", "check"):
        editor.apply_op(form, op)
        return _render_editor(request, project, form, rubric=rubric)
    task, task_errors = _task(project, form.task_id)
    errors = editor.merge_errors(
        form.errors + task_errors,
        services.rubric_editor_errors(project=project, rubric=rubric, name=form.name, task=task, spec=form.spec),
    )
    if op == "check" or errors:
        return _render_editor(request, project, form, rubric=rubric, errors=errors, checked=True,
                              status=400 if op == "save" else 200)
    try:
        if rubric is None:
            rubric = services.rubric_create(project=project, name=form.name, description=form.description, task=task,
                                            spec=form.spec, author=request.user, note=form.note or "Initial version")
            messages.success(request, f"Rubric “{rubric.name}” created (v1).")
        else:
            version = services.rubric_update(rubric=rubric, name=form.name, description=form.description, task=task,
                                              spec=form.spec, author=request.user, note=form.note,
                                              base_number=form.base_number)
            if version is None:
                messages.success(request, "Details saved. The criteria are unchanged, so no new version was made.")
            else:
                messages.success(request, f"Saved v{version.number}: {version.note}")
    except ConflictError as error:
        # The form keeps the user's edits and now carries the latest number: saving again is a deliberate choice.
        form.base_number = error.extra["current"]["number"]
        return _render_editor(request, project, form, rubric=rubric, conflict=error, status=409)
    except ApplicationError as error:  # e.g. a name taken by a save that raced this one
        errors = error.extra.get("errors") or [{"path": error.field or "", "message": error.message}]
        return _render_editor(request, project, form, rubric=rubric, errors=errors, checked=True, status=400)
    url = reverse("rubrics:detail", args=[project.pk, rubric.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def rubric_create(request: HttpRequest, project: Project) -> HttpResponse:
    if request.method == "POST":
        return _editor_post(request, project, None)
    form = editor.editor_blank(task_id=parse_id(request.GET.get("task"), field="task"))
    return _render_editor(request, project, form, rubric=None)


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def rubric_edit(request: HttpRequest, project: Project, rubric_id: int) -> HttpResponse:
    rubric = selectors.rubric_get(project, rubric_id)
    if request.method == "POST":
        return _editor_post(request, project, rubric)
    latest = selectors.rubric_latest_version(rubric)
    # ?from=N opens an older version's spec; the base stays the latest, so saving it makes a new version on top.
    start = latest
    number = parse_int(request.GET.get("from"), field="from", minimum=0)
    if number is not None and latest is not None:
        start = selectors.rubric_version_by_number(rubric, number)
    form = editor.editor_for_version(name=rubric.name, description=rubric.description, task_id=rubric.task_id,
                                    spec=start.spec if start else {}, base_number=latest.number if latest else None)
    return _render_editor(request, project, form, rubric=rubric)


@require_POST
@project_view(Action.EDIT)
def rubric_validate(request: HttpRequest, project: Project, rubric_id: int | None = None) -> HttpResponse:
    """htmx: the editor's fields checked as the user types; answers out-of-band swaps of every error slot."""
    rubric = selectors.rubric_get(project, rubric_id) if rubric_id is not None else None
    form = editor.parse_editor(request.POST)
    task, task_errors = _task(project, form.task_id)
    errors = editor.merge_errors(
        form.errors + task_errors,
        services.rubric_editor_errors(project=project, rubric=rubric, name=form.name, task=task, spec=form.spec),
    )
    latest = selectors.rubric_latest_version(rubric) if rubric is not None else None
    stale = latest if latest is not None and form.base_number is not None and latest.number != form.base_number else None
    context = {"view": editor.editor_view(form, errors), "stale": stale, "rubric": rubric, "checked": True}
    return render(request, f"{EDITOR}#validation", context)


# --- versions -----------------------------------------------------------------------------------------------------


@require_GET
@project_view(Action.VIEW)
def rubric_diff(request: HttpRequest, project: Project, rubric_id: int) -> HttpResponse:
    """Side-by-side diff of two versions (?a=1&b=3); defaults to the latest against the one before it."""
    rubric = selectors.rubric_get(project, rubric_id)
    numbers = list(selectors.rubric_versions(rubric).values_list("number", flat=True))
    a = parse_int(request.GET.get("a"), field="a", minimum=0)
    b = parse_int(request.GET.get("b"), field="b", minimum=0)
    new = b if b is not None else (numbers[0] if numbers else 0)
    old = a if a is not None else next((n for n in numbers if n < new), new)
    comparison = selectors.rubric_version_diff(rubric, old, new) if numbers else None
    return render(request, "rubrics/rubric_diff.html",
                  {"rubric": rubric, "numbers": numbers, "comparison": comparison, "a": old, "b": new})


@require_POST
@project_view(Action.EDIT)
def rubric_version_restore(request: HttpRequest, project: Project, rubric_id: int, number: int) -> HttpResponse:
    rubric = selectors.rubric_get(project, rubric_id)
    version = selectors.rubric_version_by_number(rubric, number)
    try:
        restored = services.rubric_version_restore(version=version, author=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Restored v{number} as v{restored.number}.")
    url = reverse("rubrics:detail", args=[project.pk, rubric.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_GET
@project_view(Action.VIEW)
def rubric_version_verifiers(request: HttpRequest, project: Project, version_id: int) -> HttpResponse:
    """The version's judge criteria as a verifiers v1 RubricJudge criteria file (JSON download)."""
    from training.rubrics.export import verifiers_criteria

    version = selectors.rubric_version_get(project, version_id)
    try:
        payload = verifiers_criteria(rubric_spec_validate(version.spec))
    except ValueError as error:
        raise ApplicationError(f"Cannot export to verifiers: {error}") from error
    response = JsonResponse(payload, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="rubric-{version.rubric_id}-v{version.number}-verifiers.json"'
    return response
