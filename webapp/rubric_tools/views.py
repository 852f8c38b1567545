"""Pages of the rubric tools: live preview ("try it"), AI-drafted rubrics and the dry run. Each tool starts a job
(webapp.rubric_tools.preview / drafting / dryrun) and its page polls the job row with htmx."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.params import parse_id
from webapp.core.permissions import Action, project_view
from webapp.core.visibility import scores_page
from webapp.rubric_tools import drafting, dryrun, jobs, preview
from webapp.rubric_tools.forms import DraftForm, DryRunForm, PreviewForm, endpoint_choices
from webapp.rubrics import selectors
from webapp.rubrics.editor import parse_editor
from webapp.rubrics.models import RubricToolJob, RubricVersion
from webapp.tasks.forms import form_error
from webapp.tasks.models import Task

PREVIEW = "rubrics/preview.html"
DRAFT = "rubrics/draft.html"
DRY_RUN = "rubrics/dryrun.html"


def _preview_context(request: HttpRequest, project: Project, *, version: RubricVersion | None, spec_json: str = "",
                     task: Task | None = None, form: PreviewForm | None = None, job: RubricToolJob | None = None,
                     error: ApplicationError | None = None) -> dict:
    task = task or (version.rubric.task if version is not None else None)
    candidates = list(preview.preview_candidates(project, task))
    form = form or PreviewForm(project=project, candidates=candidates, initial={
        "version": version.pk if version else None, "spec_json": spec_json, "task": task.pk if task else None,
        "endpoint": endpoint_choices(project).first()})
    spec = version.spec if version is not None else None
    has_judge = any(c.get("kind") == "judge" for c in (spec or {}).get("criteria", [])) if spec else True
    return {"version": version, "form": form, "candidates": candidates, "task": task, "job": job,
            "preview": preview.preview_rows(job) if job else None, "error": error, "has_judge": has_judge,
            "spec_json": spec_json, "max_rollouts": preview.PREVIEW_MAX_ROLLOUTS}


@require_GET
@project_view(Action.EDIT)
def preview_version(request: HttpRequest, project: Project, version_id: int) -> HttpResponse:
    """Try a saved version on a few rollouts of its task or on a pasted completion."""
    version = selectors.rubric_version_get(project, version_id)
    return render(request, PREVIEW, _preview_context(request, project, version=version))


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def preview_spec(request: HttpRequest, project: Project) -> HttpResponse:
    """Try an unsaved spec: `spec_json` (and `task`), or the editor's own fields ("Try this spec")."""
    data = request.POST if request.method == "POST" else request.GET
    task_id = parse_id(data.get("task"), field="task")
    task = Task.objects.filter(project=project, pk=task_id).first() if task_id else None
    spec_json = data.get("spec_json", "")
    if not spec_json and any(key.startswith("criteria.") for key in data):
        spec_json = json.dumps(parse_editor(data).spec, indent=2)
    return render(request, PREVIEW, _preview_context(request, project, version=None, task=task, spec_json=spec_json))


@require_POST
@project_view(Action.EDIT)
def preview_run(request: HttpRequest, project: Project) -> HttpResponse:
    version_id = parse_id(request.POST.get("version"), field="version")
    version = selectors.rubric_version_get(project, version_id) if version_id else None
    task_id = parse_id(request.POST.get("task"), field="task")
    task = Task.objects.filter(project=project, pk=task_id).first() if task_id else None
    candidates = list(preview.preview_candidates(project, task or (version.rubric.task if version else None)))
    form = PreviewForm(request.POST, project=project, candidates=candidates)
    job, error = None, None
    if form.is_valid():
        data = form.cleaned_data
        try:
            spec = version.spec if version is not None else preview.spec_from_json(data["spec_json"])
            job = preview.rubric_preview_create(
                project=project, spec=spec, version=version, task=task, rollout_ids=data["rollouts"],
                completion=data["completion"], prompt=data["prompt"], reference=data["reference"],
                endpoint=data["endpoint"], created_by=request.user)
        except ApplicationError as exc:
            error = exc
            form_error(form, exc)
    else:
        error = ApplicationError("; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
    if job is not None and not request.htmx:
        return redirect("rubrics:preview_job", project.pk, job.pk)
    context = _preview_context(request, project, version=version, task=task, form=form, job=job, error=error,
                               spec_json=request.POST.get("spec_json", ""))
    status = 400 if error else 200
    if request.htmx:
        return render(request, f"{PREVIEW}#preview_result", context, status=status)
    return render(request, PREVIEW, context, status=status)


@require_GET
@project_view(Action.VIEW)
@scores_page
def preview_job(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = jobs.tool_job_get(project, job_id, RubricToolJob.Kind.PREVIEW)
    context = {"job": job, "preview": preview.preview_rows(job), "version": job.rubric_version}
    if request.htmx:
        return render(request, f"{PREVIEW}#preview_result", context)
    return render(request, "rubrics/preview_job.html", context)


# --- AI drafts ----------------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def draft_start(request: HttpRequest, project: Project) -> HttpResponse:
    initial = {"task": parse_id(request.GET.get("task"), field="task"), "endpoint": endpoint_choices(project).first()}
    form = DraftForm(request.POST or None, project=project, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            job = drafting.rubric_draft_create(project=project, created_by=request.user, **form.cleaned_data)
        except ApplicationError as error:
            form_error(form, error)
        else:
            return redirect("rubrics:draft_job", project.pk, job.pk)
    return render(request, DRAFT, {"form": form}, status=400 if form.errors else 200)


def _draft_context(job: RubricToolJob, *, name: str = "", spec_json: str | None = None,
                   checklists: dict[int, str] | None = None, error: ApplicationError | None = None) -> dict:
    proposed = job.result.get("checklists", {})
    examples = [{**e, "checklist_text": (checklists or {}).get(e["pk"], "\n".join(proposed.get(e["id"], [])))}
                for e in job.params.get("examples", [])]
    task_name = job.task.name if job.task else "task"
    return {"job": job, "examples": examples, "error": error,
            "name": name or f"{task_name} (drafted #{job.pk})",
            "spec_json": spec_json if spec_json is not None else drafting.draft_spec_text(job),
            "criteria": job.result.get("spec", {}).get("criteria", [])}


@require_GET
@project_view(Action.VIEW)
def draft_job(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = jobs.tool_job_get(project, job_id, RubricToolJob.Kind.DRAFT)
    context = _draft_context(job)
    if request.htmx:
        return render(request, "rubrics/draft_job.html#draft_status", context)
    return render(request, "rubrics/draft_job.html", context)


@require_POST
@project_view(Action.EDIT)
def draft_accept(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = jobs.tool_job_get(project, job_id, RubricToolJob.Kind.DRAFT)
    checklists = {parse_id(k.removeprefix("checklist_"), field=k): v for k, v in request.POST.items()
                  if k.startswith("checklist_")}
    name, spec_json = request.POST.get("name", ""), request.POST.get("spec_json", "")
    try:
        rubric = drafting.rubric_draft_accept(job=job, name=name, spec_json=spec_json, checklists=checklists,
                                              author=request.user)
    except ApplicationError as error:
        context = _draft_context(job, name=name, spec_json=spec_json, checklists=checklists, error=error)
        return render(request, "rubrics/draft_job.html", context, status=error.status)
    messages.success(request, f"Rubric “{rubric.name}” created from the draft (v1). Refine it here; saving makes v2.")
    return redirect("rubrics:edit", project.pk, rubric.pk)


# --- dry run ------------------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def dryrun_start(request: HttpRequest, project: Project, version_id: int) -> HttpResponse:
    version = selectors.rubric_version_get(project, version_id)
    initial = {"task": version.rubric.task_id, "endpoint": endpoint_choices(project).first()}
    form = DryRunForm(request.POST or None, project=project, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            job = dryrun.rubric_dry_run_create(project=project, version=version, created_by=request.user,
                                               **form.cleaned_data)
        except ApplicationError as error:
            form_error(form, error)
        else:
            return redirect("rubrics:dryrun_job", project.pk, job.pk)
    return render(request, DRY_RUN, {"form": form, "version": version}, status=400 if form.errors else 200)


@require_GET
@project_view(Action.VIEW)
@scores_page
def dryrun_job(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = jobs.tool_job_get(project, job_id, RubricToolJob.Kind.DRY_RUN)
    context = {"job": job, "version": job.rubric_version, "r": job.result}
    if request.htmx:
        return render(request, "rubrics/dryrun_job.html#dryrun_status", context)
    return render(request, "rubrics/dryrun_job.html", context)
