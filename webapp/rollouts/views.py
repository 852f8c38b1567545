from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.permissions import Action, project_view
from webapp.rollouts import selectors, services
from webapp.rollouts.forms import GenerationJobForm
from webapp.rollouts.models import GenerationJob


@require_GET
@project_view(Action.VIEW)
def job_list(request: HttpRequest, project: Project) -> HttpResponse:
    context = {"jobs": selectors.generation_job_list(project)[:100], "form": GenerationJobForm(project=project)}
    return render(request, "rollouts/job_list.html", context)


@require_POST
@project_view(Action.EDIT)
def job_create(request: HttpRequest, project: Project) -> HttpResponse:
    form = GenerationJobForm(request.POST, project=project)
    if form.is_valid():
        try:
            job = services.generation_job_create(
                project=project, task=form.cleaned_data["task"], endpoint=form.cleaned_data["endpoint"],
                split=form.cleaned_data["split"], params=form.params(),
                samples_per_example=form.cleaned_data["samples_per_example"], created_by=request.user,
                example_count=form.cleaned_data["example_count"], example_seed=form.cleaned_data["example_seed"] or 0,
            )
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Generation job #{job.pk} started.")
            return redirect("rollouts:job_detail", project.pk, job.pk)
    context = {"jobs": selectors.generation_job_list(project)[:100], "form": form}
    return render(request, "rollouts/job_list.html", context, status=400)


@require_GET
@project_view(Action.VIEW)
def job_detail(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = get_object_or_404(selectors.generation_job_list(project), pk=job_id)
    template = "rollouts/job_detail.html#progress" if request.htmx else "rollouts/job_detail.html"
    return render(request, template, {"job": job})


@require_POST
@project_view(Action.EDIT)
def job_cancel(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob, project=project, pk=job_id)
    if services.generation_job_cancel(job=job):
        messages.success(request, f"Generation job #{job.pk} cancelled; rollouts already written are kept.")
    return redirect("rollouts:job_detail", project.pk, job.pk)


@require_POST
@project_view(Action.EDIT)
def job_retry(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    job = get_object_or_404(GenerationJob.objects.select_related("project", "task", "endpoint", "checkpoint"),
                            project=project, pk=job_id)
    try:
        again = services.generation_job_retry(job=job, created_by=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("rollouts:job_detail", project.pk, job.pk)
    messages.success(request, f"Generation job #{again.pk} started with the settings of #{job.pk}.")
    return redirect("rollouts:job_detail", project.pk, again.pk)
