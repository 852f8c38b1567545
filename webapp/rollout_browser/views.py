"""The rollout browser: rollouts with their judge scores and human labels, under the blind-review rule. It reads
rollouts, judging and reviews, so it sits above all three (docs/architecture.md); its URLs keep the `rollouts`
namespace (webapp/urls.py joins both lists)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.core.models import Project
from webapp.core.pagination import keyset_page, parse_cursor
from webapp.core.permissions import Action, project_view
from webapp.judging import selectors as judging_selectors
from webapp.judging.presentation import scores_presented
from webapp.reviews import selectors as review_selectors
from webapp.reviews.blind import blind_rollout_ids, judge_scores_visible, redact_metadata
from webapp.rollouts import selectors as rollout_selectors
from webapp.rollouts.forms import RolloutFilterForm
from webapp.rubrics import selectors as rubric_selectors


@require_GET
@project_view(Action.VIEW)
def rollout_list(request: HttpRequest, project: Project) -> HttpResponse:
    form = RolloutFilterForm(request.GET)
    filters = form.filters()
    hidden = blind_rollout_ids(user=request.user, role=request.project_role, project=project)
    rollouts = rollout_selectors.rollout_browse(project, filters=filters, hidden_scores=hidden, viewer=request.user.pk)
    page = keyset_page(rollouts, before=parse_cursor(request.GET.get("before")))
    query = request.GET.copy()
    query.pop("before", None)
    context = {
        "form": form,
        "page": page,
        "query": query.urlencode(),
        "rubric_version_id": filters.get("rubric_version"),
        "tasks": project.tasks.order_by("name"),
        "versions": rubric_selectors.rubric_versions_of_project(project)[:50],
        "jobs": rollout_selectors.generation_job_list(project)[:50],
    }
    template = "rollouts/rollout_list.html#results" if request.htmx else "rollouts/rollout_list.html"
    return render(request, template, context)


@require_GET
@project_view(Action.VIEW)
def rollout_detail(request: HttpRequest, project: Project, rollout_id: int) -> HttpResponse:
    rollout = rollout_selectors.rollout_get(project, rollout_id)
    visible = judge_scores_visible(user=request.user, role=request.project_role, rollout=rollout)
    if not visible:  # rewards a training run or an import stored with the rollout are scores too
        rollout.metadata = redact_metadata(rollout.metadata)
    context = {"rollout": rollout, "scores": scores_presented(judging_selectors.rollout_scores(rollout)) if visible else [],
               "scores_hidden": not visible, "rendered": request.GET.get("view") == "rendered",
               "labels": review_selectors.rollout_labels(rollout) if visible else []}
    return render(request, "rollouts/rollout_detail.html", context)


@require_GET
@project_view(Action.VIEW)
def rollout_group(request: HttpRequest, project: Project, group_key: str) -> HttpResponse:
    blind = blind_rollout_ids(user=request.user, role=request.project_role, project=project)
    rollouts = judging_selectors.rollout_group(project, group_key, hidden_scores=blind)
    if not rollouts:
        raise Http404("No such group.")
    hidden = set(blind.filter(pk__in=[r.pk for r in rollouts]).values_list("pk", flat=True))
    for rollout in rollouts:
        rollout.scores_shown = [] if rollout.pk in hidden else scores_presented(rollout.criterion_scores.all())
    context = {"rollouts": rollouts, "group_key": group_key, "first": rollouts[0], "hidden": hidden}
    return render(request, "rollouts/rollout_group.html", context)
