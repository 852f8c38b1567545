"""Views of the labeling additions (webapp/reviews/labeling.py): guidelines, gold responses, ranking."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.http import AppRequest
from webapp.core.models import Project
from webapp.core.params import parse_id, parse_int
from webapp.core.permissions import Action, project_view
from webapp.reviews import labeling, selectors
from webapp.reviews.models import GoldResponse, RankingLabel, ReviewItem, ReviewMode, ReviewQueue
from webapp.rollouts.models import Rollout
from webapp.rollouts.rendering import render_markdown

GOLD_PANEL = "reviews/_gold.html"


def label_page_context(request: AppRequest, queue: ReviewQueue, item: ReviewItem) -> dict[str, Any]:
    """What the labeling page adds for guidelines, gold responses and ranking (two queries at most)."""
    context: dict[str, Any] = {"guidelines_html": render_markdown(queue.guidelines) if queue.guidelines else ""}
    if queue.mode == ReviewMode.RANKING:
        rollouts = {r.pk: r for r in Rollout.objects.filter(pk__in=item.group_rollout_ids).select_related("example")}
        ranking = RankingLabel.objects.filter(item=item, annotator=request.user).first()
        rank_of = {rid: i + 1 for i, rid in enumerate(ranking.ranking)} if ranking else {}
        context["ranked"] = [(n, rollouts[rid], rank_of.get(rid)) for n, rid in enumerate(item.group_rollout_ids, 1)
                             if rid in rollouts]
        context["ranking"] = ranking
        context["rank_choices"] = range(1, len(context["ranked"]) + 1)
    return context  # the gold panel loads when opened: the labeling page's queries stay as they were


@require_POST
@project_view(Action.EDIT)
def queue_guidelines(request: AppRequest, project: Project, queue_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    try:
        labeling.guidelines_save(queue=queue, text=request.POST.get("guidelines", ""), user=request.user)
    except ApplicationError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, "Guidelines saved; annotators see them on the labeling page.")
    return redirect("reviews:detail", project.pk, queue.pk)


@require_http_methods(["GET", "POST"])
@project_view(Action.LABEL)
def item_gold(request: AppRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    """The annotator's corrected response: GET answers the panel (loaded when opened), POST saves it (an empty text
    deletes it) and answers the panel."""
    queue = selectors.queue_get(project, queue_id)
    item = labeling.item_held(queue=queue, item_id=item_id, annotator=request.user)
    if request.method == "GET":
        rollout = Rollout.objects.only("pk", "completion").get(pk=item.rollout_id)
        gold = GoldResponse.objects.filter(rollout_id=item.rollout_id, annotator=request.user).first()
        return render(request, GOLD_PANEL, {"queue": queue, "item": item, "rollout": rollout, "gold": gold,
                                            "loaded": True})
    status, error, conflict = 200, "", None
    row_version = parse_int(request.POST.get("gold_row_version"), field="gold_row_version", default=0, minimum=0) or 0
    rollout_id = parse_id(request.POST.get("rollout"), field="rollout") or item.rollout_id
    text = request.POST.get("gold", "")
    try:
        gold = labeling.gold_save(item=item, rollout_id=rollout_id, annotator=request.user, text=text,
                                  row_version=row_version)
    except ConflictError as exc:
        status, error, conflict = 409, exc.message, exc.extra.get("current")
        gold = GoldResponse.objects.filter(rollout_id=rollout_id, annotator=request.user).first()
    except ApplicationError as exc:
        status, error = exc.status, exc.message
        gold = GoldResponse.objects.filter(rollout_id=rollout_id, annotator=request.user).first()
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("reviews:item", project.pk, queue.pk, item.pk)
    rollout = Rollout.objects.only("pk", "completion").get(pk=rollout_id)
    context = {"queue": queue, "item": item, "rollout": rollout, "gold": gold, "gold_error": error, "loaded": True,
               "gold_conflict": conflict, "gold_saved": status == 200, "gold_text": text if status != 200 else None}
    return render(request, GOLD_PANEL, context, status=status)


@require_POST
@project_view(Action.LABEL)
def item_ranking(request: AppRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    """Submit a ranking: `rank-<rollout id>` = 1 (best) … n for every response of the group."""
    queue = selectors.queue_get(project, queue_id)
    item = labeling.item_held(queue=queue, item_id=item_id, annotator=request.user)
    try:
        ranks = {}
        for rollout_id in item.group_rollout_ids or []:
            ranks[rollout_id] = parse_int(request.POST.get(f"rank-{rollout_id}"), field="rank", minimum=1,
                                          maximum=len(item.group_rollout_ids))
        if any(r is None for r in ranks.values()) or len(set(ranks.values())) != len(ranks):
            raise ApplicationError("Give every response a different rank, 1 for the best.", field="ranking")
        ranking = sorted(ranks, key=lambda rid: ranks[rid] or 0)
        labeling.ranking_submit(item=item, annotator=request.user, ranking=ranking,
                                row_version=parse_int(request.POST.get("row_version"), field="row_version", default=0,
                                                      minimum=0) or 0,
                                comment=request.POST.get("comment", "").strip())
    except ApplicationError as error:
        messages.error(request, error.message)
        return redirect("reviews:item", project.pk, queue.pk, item.pk)
    return redirect("reviews:next", project.pk, queue.pk)
