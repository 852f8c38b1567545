from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.core.pagination import keyset_page, parse_cursor
from webapp.core.permissions import Action, project_view
from webapp.judging.presentation import scores_presented
from webapp.reviews.blind import blind_rollout_ids, judge_scores_visible, redact_metadata
from webapp.rollouts import selectors, services
from webapp.rollouts.forms import GenerationJobForm, RolloutFilterForm
from webapp.rollouts.models import GenerationJob


@require_GET
@project_view(Action.VIEW)
def rollout_list(request: HttpRequest, project: Project) -> HttpResponse:
    form = RolloutFilterForm(request.GET)
    filters = form.filters()
    hidden = blind_rollout_ids(user=request.user, role=request.project_role, project=project)
    rollouts = selectors.rollout_browse(project, filters=filters, hidden_scores=hidden)
    page = keyset_page(rollouts, before=parse_cursor(request.GET.get("before")))
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "rubric_version_id": filters.get("rubric_version"),
        "tasks": project.tasks.order_by("name"),
        "versions": selectors.rubric_versions_with_scores(project)[:50],
        "jobs": selectors.generation_job_list(project)[:50],
    }
    template = "rollouts/rollout_list.html#results" if request.htmx else "rollouts/rollout_list.html"
    return render(request, template, context)


@require_GET
@project_view(Action.VIEW)
def rollout_detail(request: HttpRequest, project: Project, rollout_id: int) -> HttpResponse:
    rollout = selectors.rollout_get(project, rollout_id)
    visible = judge_scores_visible(user=request.user, role=request.project_role, rollout=rollout)
    if not visible:  # rewards a training run or an import stored with the rollout are scores too
        rollout.metadata = redact_metadata(rollout.metadata)
    context = {"rollout": rollout, "scores": scores_presented(selectors.rollout_scores(rollout)) if visible else [],
               "scores_hidden": not visible, "rendered": request.GET.get("view") == "rendered",
               "labels": selectors.rollout_labels(rollout) if visible else []}
    return render(request, "rollouts/rollout_detail.html", context)


@require_GET
@project_view(Action.VIEW)
def rollout_group(request: HttpRequest, project: Project, group_key: str) -> HttpResponse:
    blind = blind_rollout_ids(user=request.user, role=request.project_role, project=project)
    rollouts = selectors.rollout_group(project, group_key, hidden_scores=blind)
    if not rollouts:
        raise Http404("No such group.")
    hidden = set(blind.filter(pk__in=[r.pk for r in rollouts]).values_list("pk", flat=True))
    for rollout in rollouts:
        rollout.scores_shown = [] if rollout.pk in hidden else scores_presented(rollout.criterion_scores.all())
    context = {"rollouts": rollouts, "group_key": group_key, "first": rollouts[0], "hidden": hidden}
    return render(request, "rollouts/rollout_group.html", context)


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
