from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.core.visibility import scores_page
from webapp.judging import selectors, services
from webapp.judging.forms import JudgeJobForm


@require_GET
@project_view(Action.VIEW)
def judge_job_list(request: HttpRequest, project: Project) -> HttpResponse:
    # Links from a rubric or a task preselect them ("Score rollouts with this rubric →"); unknown values select nothing.
    initial = {key: request.GET[key] for key in ("rubric_version", "task", "endpoint", "job") if key in request.GET}
    context = {"jobs": selectors.judge_job_list(project)[:100], "form": JudgeJobForm(project=project, initial=initial)}
    return render(request, "judging/job_list.html", context)


@require_POST
@project_view(Action.EDIT)
def judge_job_create(request: HttpRequest, project: Project) -> HttpResponse:
    form = JudgeJobForm(request.POST, project=project)
    if form.is_valid():
        try:
            job = services.judge_job_create(
                project=project, rubric_version=form.cleaned_data["rubric_version"],
                endpoint=form.cleaned_data["endpoint"], selection=form.selection(), created_by=request.user,
            )
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Judge job #{job.pk} started.")
            return redirect("judging:detail", project.pk, job.pk)
    context = {"jobs": selectors.judge_job_list(project)[:100], "form": form}
    return render(request, "judging/job_list.html", context, status=400)


@require_GET
@project_view(Action.VIEW)
@scores_page
def judge_job_detail(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = selectors.judge_job_get(project, job_id)
    context = {"job": job, "criteria": selectors.judge_job_criterion_summary(job)}
    template = "judging/job_detail.html#progress" if request.htmx else "judging/job_detail.html"
    return render(request, template, context)


@require_POST
@project_view(Action.EDIT)
def judge_job_cancel(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = selectors.judge_job_get(project, job_id)
    if services.judge_job_cancel(job=job):
        messages.success(request, f"Judge job #{job.pk} cancelled; scores already written are kept.")
    return redirect("judging:detail", project.pk, job.pk)


@require_POST
@project_view(Action.EDIT)
def judge_job_retry(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = selectors.judge_job_get(project, job_id)
    try:
        again = services.judge_job_retry(job=job, created_by=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("judging:detail", project.pk, job.pk)
    messages.success(request, f"Judge job #{again.pk} started with the settings of #{job.pk}.")
    return redirect("judging:detail", project.pk, again.pk)
