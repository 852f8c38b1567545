from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from webapp.core.errors import ApplicationError, ConflictError
from webapp.core.jobs import job_state_changed
from webapp.core.models import Project
from webapp.core.params import parse_float, parse_id, parse_int
from webapp.core.permissions import Action, project_view, role_allows
from webapp.core.visibility import scores_page
from webapp.judging.presentation import scores_presented
from webapp.reviews import dashboard, labeling_views, queue_stats, selectors, services
from webapp.reviews.blind import request_blindness
from webapp.reviews.comparisons import comparison_return
from webapp.reviews.criteria import FormCriterion, form_criteria, form_criterion
from webapp.reviews.forms import QueueCreateForm
from webapp.reviews.models import AssignmentStatus, ReviewAssignment, ReviewItem, ReviewMode, ReviewQueue
from webapp.rollouts.pickers import selection_display, selection_names
from webapp.rollouts.rendering import render_markdown
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.selectors import rubric_versions_of_project

LABEL_PAGE = "reviews/label.html"
NOTE_CONFLICT = "This item's labels were changed elsewhere since you loaded the page; your comment was not saved."


@require_GET
@project_view(Action.VIEW)
def queue_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "reviews/queue_list.html", {"queues": selectors.queue_list(project)[:100]})


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def queue_create(request: HttpRequest, project: Project) -> HttpResponse:
    form = QueueCreateForm(request.POST or None, project=project, initial=request.GET.dict() or None)
    if request.method == "POST" and form.is_valid():
        try:
            queue = services.review_queue_create(project=project, created_by=request.user, **form.service_kwargs())
        except ApplicationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Queue {queue.name} created with {queue.items.count()} items.")
            return redirect("reviews:detail", project.pk, queue.pk)
    return render(request, "reviews/queue_create.html", {"form": form}, status=400 if form.errors else 200)


@require_GET
@project_view(Action.VIEW)
def queue_detail(request: HttpRequest, project: Project, queue_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    progress = selectors.queue_progress(queue)
    context = {
        "queue": queue, "progress": progress,
        # Agreement with the judge speaks of judge scores, agreement between annotators of their labels: neither while
        # the user has blind items in the project.
        "annotators": queue_stats.queue_annotators(queue, progress,
                                                   with_scores=not request_blindness(request).active),
        "guidelines_html": render_markdown(queue.guidelines) if queue.guidelines else "",
        "selection": selection_display(queue.selection, selection_names(project=project, selections=[queue.selection])),
        "can_label": role_allows(request.project_role, Action.LABEL),  # type: ignore[attr-defined]
    }
    template = "reviews/queue_detail.html#progress" if request.htmx else "reviews/queue_detail.html"
    return render(request, template, context)


@require_GET
@project_view(Action.LABEL)
def queue_next(request: HttpRequest, project: Project, queue_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    item = services.item_next(queue=queue, annotator=request.user)
    after = request.GET.get("after")
    if item is None:
        context = {"queue": queue, "progress": selectors.queue_progress(queue), "reveal": _reveal(request, queue, after)}
        return render(request, "reviews/queue_done.html", context)
    url = reverse("reviews:item", args=[project.pk, queue.pk, item.pk])
    after_id = parse_id(after, field="after")
    return redirect(f"{url}?after={after_id}" if after_id else url)


def _reveal(request: HttpRequest, queue: ReviewQueue, after: str | None) -> dict | None:
    """The item just submitted, with the judge's scores next to the annotator's labels (blind mode ends here)."""
    after_id = parse_id(after, field="after")
    if after_id is None:
        return None
    item = ReviewItem.objects.filter(queue=queue, pk=after_id).select_related("rollout").first()
    if item is None or queue.mode != ReviewMode.CRITERIA:
        return None
    item.queue = queue
    if not selectors.judge_scores_visible(user=request.user, role=request.project_role, rollout=item.rollout_id, queue=queue):  # type: ignore[attr-defined]
        return None
    labels = selectors.item_labels(item, request.user)
    scores = _presented(selectors.item_scores(item), queue.rubric_version)
    return _reveal_rows(queue, item, labels, scores)


def _presented(scores: dict[str, list], version: RubricVersion) -> dict[str, list]:
    """Criterion key → scores, each naming its judge and its verdict (Pass / Fail for programmatic checks)."""
    return {key: scores_presented(rows, criteria=version.criteria) for key, rows in scores.items()}


def _reveal_rows(queue: ReviewQueue, item: ReviewItem, labels: dict, scores: dict) -> dict:
    rows = [{"criterion": c, "label": labels.get(c.key), "scores": scores.get(c.key, [])} for c in form_criteria(queue.rubric_version)]
    return {"item": item, "rows": rows}


def _reveal_item(request: HttpRequest, queue: ReviewQueue, after: str | None) -> ReviewItem | None:
    """The item named by `?after=` whose judge scores the labeling page reveals, or None. Its assignment is read
    like the current one: a done assignment is itself the proof that the scores may be shown."""
    after_id = parse_id(after, field="after")
    if after_id is None or queue.mode != ReviewMode.CRITERIA:
        return None
    assignment = (ReviewAssignment.objects.filter(item__queue=queue, item_id=after_id, annotator=request.user)
                  .select_related("item").first())
    if assignment is not None and assignment.status == AssignmentStatus.DONE:
        item = assignment.item
        if not selectors.judge_scores_visible(user=request.user, role=request.project_role,  # type: ignore[attr-defined]
                                              rollout=item.rollout_id, queue=queue, submitted=True):
            return None  # still blind in another open queue
    else:
        item = ReviewItem.objects.filter(queue=queue, pk=after_id).first()
        if item is None or not selectors.judge_scores_visible(
                user=request.user, role=request.project_role, rollout=item.rollout_id, queue=queue):  # type: ignore[attr-defined]
            return None
    item.queue = queue
    return item


def _criterion_rows(item: ReviewItem, labels: dict, *, scores: dict, posted: QueryDict | None = None,
                    conflicts: dict[str, dict] | None = None) -> list[dict]:
    return [
        _row(c, labels.get(c.key), scores.get(c.key, []), posted=posted, conflict=(conflicts or {}).get(c.key))
        for c in form_criteria(item.queue.rubric_version)
    ]


def _row(criterion: FormCriterion, label, scores, *, posted: QueryDict | None = None, conflict: dict | None = None,
         error: str = "") -> dict:
    """What one criterion fieldset shows. After a conflict the row version is the current one, so submitting
    again is a deliberate overwrite, and the annotator's own pick stays selected."""
    row_version = label.row_version if label else 0
    choice = label.choice if label else ""
    if posted is not None:
        choice = posted.get(f"choice-{criterion.key}", choice) or choice
        if posted.get(f"number-{criterion.key}"):
            choice = posted[f"number-{criterion.key}"]
    if conflict is not None:
        row_version = conflict["row_version"]
    return {"criterion": criterion, "label": label, "row_version": row_version, "choice": choice,
            "scores": scores, "conflict": conflict, "error": error}


def _item_or_next(request: HttpRequest, queue: ReviewQueue, item_id: int, *, rollout: bool = False) -> tuple[ReviewItem, Any]:
    item, assignment = selectors.item_reserved(queue, item_id, request.user, rollout=rollout)
    if assignment is None:
        raise ApplicationError("This item is not reserved for you; take the next one from the queue.", status=403)
    return item, assignment


@require_GET
@project_view(Action.LABEL)
def item_label(request: HttpRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    item, assignment = _item_or_next(request, queue, item_id, rollout=True)
    return _label_page(request, queue, item, assignment)


def _label_page(request: HttpRequest, queue: ReviewQueue, item: ReviewItem, assignment, *, status: int = 200,
                posted: QueryDict | None = None, conflicts: dict | None = None, error: str = "") -> HttpResponse:
    done = assignment.status == AssignmentStatus.DONE
    # A done turn on this very item ends this queue's blindness; another open blind queue holding it may not have.
    visible = selectors.judge_scores_visible(user=request.user, role=request.project_role, rollout=item.rollout_id, queue=queue, submitted=done)  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "queue": queue, "item": item, "assignment": assignment, "done": done,
        "scores_visible": visible, "error": error, "progress": selectors.queue_totals_cached(queue),
        # item_reserved loaded it with its task and example for the page; a refused write loads it here.
        "rollout": item.rollout if ReviewItem.rollout.is_cached(item) else selectors.rollout_full(item.rollout_id),
        "previous_item_id": selectors.previous_item_id(queue, request.user, assignment),
    }
    if queue.mode == ReviewMode.PAIRWISE:
        other = selectors.rollout_full(item.rollout_b_id) if item.rollout_b_id else None
        sides = [("a", context["rollout"]), ("b", other)]
        context["sides"] = sides if item.shown_a_first else sides[::-1]
        context["pairwise"] = selectors.pairwise_label(item, request.user)
    elif queue.mode == ReviewMode.CRITERIA:
        # The current item's and the just-submitted item's labels and scores, one query each.
        revealed = _reveal_item(request, queue, request.GET.get("after"))
        rollout_ids = [item.rollout_id, *([revealed.rollout_id] if revealed else [])]
        all_labels = selectors.labels_by_rollout(queue.rubric_version_id, request.user, rollout_ids)
        scored = [r for r in rollout_ids if r != item.rollout_id or visible]
        all_scores = {rollout_id: _presented(by_key, queue.rubric_version) for rollout_id, by_key in
                      selectors.scores_by_rollout(queue.rubric_version_id, scored).items()}
        if revealed is not None:
            context["reveal"] = _reveal_rows(queue, revealed, all_labels[revealed.rollout_id],
                                            all_scores.get(revealed.rollout_id, {}))
        labels = all_labels[item.rollout_id]
        first = next(iter(labels.values()), None)
        context["rows"] = _criterion_rows(item, labels, scores=all_scores.get(item.rollout_id, {}), posted=posted,
                                          conflicts=conflicts)
        context["comment"] = posted.get("comment", "") if posted is not None else (first.comment if first else "")
        context["reward_hacking"] = bool(posted.get("reward_hacking")) if posted is not None else bool(first and first.reward_hacking)
    context.update(labeling_views.label_page_context(request, queue, item))
    return render(request, LABEL_PAGE, context, status=status)


def _number(value: str | None, field: str = "number") -> float | None:
    return parse_float(value, field=field)


def _row_version(value: str | None, field: str = "row_version") -> int:
    return parse_int(value, field=field, default=0, minimum=0) or 0


@require_POST
@project_view(Action.LABEL)
def item_autosave(request: HttpRequest, project: Project, queue_id: int, item_id: int, key: str) -> HttpResponse:
    """htmx: save one criterion when its answer changes; answers the fieldset with the new row version."""
    queue = selectors.queue_get(project, queue_id)
    item, assignment = _item_or_next(request, queue, item_id)
    criterion = form_criterion(queue.rubric_version, key)
    visible = selectors.judge_scores_visible(user=request.user, role=request.project_role, rollout=item.rollout_id, queue=queue, submitted=assignment.status == AssignmentStatus.DONE)  # type: ignore[attr-defined]
    scores = selectors.item_scores(item).get(key, []) if visible else []
    status, conflict, error = 200, None, ""
    comment, reward_hacking = _note(request.POST)
    try:
        label = services.item_label_save(
            item=item, annotator=request.user, criterion_key=key,
            row_version=_row_version(request.POST.get(f"row_version-{key}"), f"row_version-{key}"),
            choice=request.POST.get(f"choice-{key}", ""), number=_number(request.POST.get(f"number-{key}"), f"number-{key}"),
            comment=comment, reward_hacking=reward_hacking,
        )
    except ConflictError as exc:
        status, conflict, label = 409, exc.extra["current"], selectors.item_labels(item, request.user).get(key)
    except ApplicationError as exc:
        status, error, label = exc.status, exc.message, selectors.item_labels(item, request.user).get(key)
    row = _row(criterion, label, scores, posted=request.POST if status != 200 else None, conflict=conflict, error=error)
    context = {"row": row, "queue": queue, "item": item, "scores_visible": visible}
    if request.htmx:
        return render(request, f"{LABEL_PAGE}#criterion", context, status=status)
    if status != 200:
        return _label_page(request, queue, item, selectors.assignment_for(item, request.user), status=status,
                           posted=request.POST, conflicts={key: conflict} if conflict else None, error=error)
    return redirect("reviews:item", project.pk, queue.pk, item.pk)


def _note(posted: QueryDict) -> tuple[str | None, bool | None]:
    """The comment and flag when the whole labeling form was posted (htmx sends it), else (None, None): an unticked
    checkbox is absent from a form, so its absence means False only where the comment came along."""
    if "comment" not in posted:
        return None, None
    return posted["comment"].strip(), bool(posted.get("reward_hacking"))


@require_POST
@project_view(Action.LABEL)
def item_note(request: HttpRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    """htmx: autosave of the comment and reward-hacking flag (debounced while typing); answers the save status and
    the labels' new row versions (out of band), so the next autosave and the submit carry them."""
    queue = selectors.queue_get(project, queue_id)
    item, _ = _item_or_next(request, queue, item_id)
    criteria = form_criteria(queue.rubric_version)
    row_versions = {c.key: _row_version(request.POST.get(f"row_version-{c.key}"), f"row_version-{c.key}") for c in criteria}
    comment, reward_hacking = _note(request.POST)
    status, context = 200, {"queue": queue, "item": item, "note_state": "saved"}
    try:
        labels = services.item_note_save(
            item=item, annotator=request.user, comment=comment or "", reward_hacking=bool(reward_hacking),
            row_versions=row_versions,
        )
    except ConflictError as exc:
        # The page's row versions stay as they were: typing on must not overwrite what was saved elsewhere.
        status, context["note_state"], context["note_conflict"] = 409, "conflict", exc.extra["current"]
    except ApplicationError as exc:
        status, context["note_state"], context["note_error"] = exc.status, "error", exc.message
    else:
        if not labels:
            context["note_state"] = "pending"
        context["row_versions"] = [(label.criterion_key, label.row_version) for label in labels]
    if request.htmx:
        return render(request, f"{LABEL_PAGE}#note", context, status=status)
    if status != 200:
        return _label_page(request, queue, item, selectors.assignment_for(item, request.user), status=status,
                           posted=request.POST, error=context.get("note_error", "") or NOTE_CONFLICT)
    return redirect("reviews:item", project.pk, queue.pk, item.pk)


@require_POST
@project_view(Action.LABEL)
def item_submit(request: HttpRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    item, assignment = _item_or_next(request, queue, item_id)
    answers = {
        c.key: {"row_version": _row_version(request.POST.get(f"row_version-{c.key}"), f"row_version-{c.key}"),
                "choice": request.POST.get(f"choice-{c.key}", ""), "number": _number(request.POST.get(f"number-{c.key}"), f"number-{c.key}")}
        for c in form_criteria(queue.rubric_version)
    }
    try:
        services.item_submit(
            item=item, annotator=request.user, answers=answers, comment=request.POST.get("comment", "").strip(),
            reward_hacking=bool(request.POST.get("reward_hacking")),
        )
    except ConflictError as exc:
        current = exc.extra["current"]
        return _label_page(request, queue, item, assignment, status=409, posted=request.POST,
                           conflicts={current.get("criterion_key", ""): current}, error=exc.message)
    except ApplicationError as exc:
        return _label_page(request, queue, item, assignment, status=exc.status, posted=request.POST, error=exc.message)
    return _next_item_redirect(request, project, queue, after=item)


def _next_item_redirect(request: HttpRequest, project: Project, queue: ReviewQueue, *, after: ReviewItem) -> HttpResponse:
    """Straight to the next item, reserved now: one request per label instead of a hop through `next`."""
    following = services.item_next(queue=queue, annotator=request.user)
    if following is None:  # the queue is done for this annotator: `next` shows that page
        return redirect(reverse("reviews:next", args=[project.pk, queue.pk]) + f"?after={after.pk}")
    return redirect(reverse("reviews:item", args=[project.pk, queue.pk, following.pk]) + f"?after={after.pk}")


@require_POST
@project_view(Action.LABEL)
def item_skip(request: HttpRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    item, _ = _item_or_next(request, queue, item_id)
    services.item_skip(item=item, annotator=request.user)
    return redirect("reviews:next", project.pk, queue.pk)


@require_POST
@project_view(Action.LABEL)
def item_pairwise(request: HttpRequest, project: Project, queue_id: int, item_id: int) -> HttpResponse:
    queue = selectors.queue_get(project, queue_id)
    item, assignment = _item_or_next(request, queue, item_id)
    try:
        services.pairwise_submit(
            item=item, annotator=request.user, preferred=request.POST.get("preferred", ""),
            row_version=_row_version(request.POST.get("row_version")), comment=request.POST.get("comment", "").strip(),
        )
    except ApplicationError as exc:
        return _label_page(request, queue, item, assignment, status=exc.status, error=exc.message)
    back = comparison_return(request.POST.get("back"), project)
    return redirect(back) if back else redirect("reviews:next", project.pk, queue.pk)


# --- agreement dashboard, align loop, bias diagnostics ---------------------------------------------------------------


def _version_param(project: Project, value: str | None, versions: list) -> Any:
    try:
        version_id = parse_id(value, field="version")
    except ApplicationError:
        version_id = None  # a malformed id names no version of this project: the page answers as for a foreign one
    if version_id is not None:
        chosen = rubric_versions_of_project(project).filter(pk=version_id).first()
        if chosen is not None:
            return chosen
    return versions[0] if versions else None


def _version_required(project: Project, value: str | None) -> RubricVersion:
    version = _version_param(project, value, [])
    if version is None:
        raise ApplicationError("Choose a rubric version.", status=404)
    return version


@require_GET
@project_view(Action.VIEW)
@scores_page
def agreement(request: HttpRequest, project: Project) -> HttpResponse:
    versions = dashboard.labeled_versions(project.pk)
    version = _version_param(project, request.GET.get("version"), versions)
    rows = dashboard.agreement_dashboard_cached(version) if version else []
    context = {"versions": versions, "version": version, "rows": rows, "plot": dashboard.PLOT,
               "resamples": dashboard.DEFAULT_RESAMPLES,
               # Without criterion labels, say which labels exist rather than "none".
               "pairwise": [] if version else selectors.pairwise_label_counts(project)}
    return render(request, "reviews/agreement.html", context)


@require_GET
@project_view(Action.VIEW)
@scores_page
def agreement_disagreements(request: HttpRequest, project: Project) -> HttpResponse:
    version = _version_required(project, request.GET.get("version"))
    key = request.GET.get("key", "")
    criterion = form_criterion(version, key)
    fingerprint = request.GET.get("fingerprint", "")
    items = dashboard.disagreements(version, fingerprint=fingerprint, key=key)
    context = {"version": version, "criterion": criterion, "fingerprint": fingerprint, "items": items,
               "judge_name": dashboard.judge_names(version).get(fingerprint, fingerprint),
               "raters": dashboard.rater_agreement(version, fingerprint=fingerprint, key=key)}
    return render(request, "reviews/disagreements.html", context)


@require_GET
@project_view(Action.VIEW)
@scores_page
def agreement_bias(request: HttpRequest, project: Project) -> HttpResponse:
    if "version" in request.GET:
        version = _version_required(project, request.GET["version"])
    else:  # the newest version with labels of either kind (criterion or pairwise), or a page saying there are none
        labeled = [*dashboard.labeled_versions(project.pk), *(p.version for p in selectors.pairwise_label_counts(project))]
        version = max(labeled, key=lambda v: v.pk, default=None)
        if version is None:
            return render(request, "reviews/bias.html", {"version": None})
    check = selectors.position_check_latest(version)
    context: dict[str, Any] = {
        "version": version, "check": check,
        "check_url": reverse("reviews:bias", args=[project.pk]) + f"?version={version.pk}",
        "can_edit": role_allows(request.project_role, Action.EDIT),  # type: ignore[attr-defined]
    }
    seen = request.GET.get("state")
    if request.htmx and seen is not None and check is not None and not job_state_changed(seen, check):
        return render(request, "reviews/bias.html#position_check", context)  # the poll: the check's progress only
    context.update(bias=dashboard.bias_diagnostics_cached(version), endpoints=project.endpoints.order_by("name"),
                   max_pairs=services.POSITION_CHECK_MAX_PAIRS)
    if request.htmx and seen is not None:  # the check moved on (e.g. finished): its verdicts re-render too
        return reswap(retarget(render(request, "reviews/bias.html#bias", context), "#bias"), "outerHTML")
    return render(request, "reviews/bias.html#bias" if request.htmx else "reviews/bias.html", context)


@require_POST
@project_view(Action.EDIT)
@scores_page
def agreement_position_check(request: HttpRequest, project: Project) -> HttpResponse:
    """Start the judge-side position-swap check: the chosen judge compares pairs of rollouts in both orders."""
    version = _version_required(project, request.POST.get("version"))
    endpoint_id = parse_id(request.POST.get("endpoint"), field="endpoint")
    endpoint = project.endpoints.filter(pk=endpoint_id).first() if endpoint_id else None
    pairs = parse_int(request.POST.get("pairs"), field="pairs", default=0, minimum=0, maximum=100_000) or 0
    services.position_check_enqueue(rubric_version=version, endpoint=endpoint, pairs=pairs, created_by=request.user)
    assert endpoint is not None  # position_check_enqueue refuses a missing one
    messages.success(request, f"Position-swap check started: {endpoint.name} compares up to {pairs} pairs of rollouts "
                              "in both orders. Its progress shows below.")
    return redirect(reverse("reviews:bias", args=[project.pk]) + f"?version={version.pk}")


def _side(project: Project, version_value: str | None, fingerprint: str | None) -> dashboard.Side | None:
    version = _version_param(project, version_value, [])
    if version is None or not fingerprint:
        return None
    return dashboard.Side(version, fingerprint)


@require_GET
@project_view(Action.VIEW)
@scores_page
def align(request: HttpRequest, project: Project) -> HttpResponse:
    return _align_page(request, project, request.GET)


def _align_page(request: HttpRequest, project: Project, params: QueryDict, *, rejudge_error: ApplicationError | None = None,
                status: int = 200) -> HttpResponse:
    versions = list(rubric_versions_of_project(project)[:50])
    labeled = dashboard.labeled_versions(project.pk)
    labels = _version_param(project, params.get("labels"), labeled)
    a = _side(project, params.get("a_version"), params.get("a_fp"))
    b = _side(project, params.get("b_version"), params.get("b_fp"))
    fingerprints = sorted({fp for v in versions[:10] for fp in dashboard.version_fingerprints(v)})
    rows = dashboard.align_compare(labels=labels, a=a, b=b) if labels and a and b else []
    context = {
        "versions": versions, "labeled": labeled, "labels": labels, "a": a, "b": b, "rows": rows,
        "fingerprints": fingerprints, "endpoints": project.endpoints.order_by("name"),
        "labeled_count": len(dashboard.labeled_rollout_ids(labels)) if labels else 0,
        "can_edit": role_allows(request.project_role, Action.EDIT),  # type: ignore[attr-defined]
        # A refused re-judge comes back to this page with the reason at its form and the choices kept.
        "rejudge_error": rejudge_error, "rejudge_version": params.get("version", ""),
        "rejudge_endpoint": params.get("endpoint", ""),
    }
    return render(request, "reviews/align.html", context, status=status)


@require_POST
@project_view(Action.EDIT)
@scores_page
def align_rejudge(request: HttpRequest, project: Project) -> HttpResponse:
    """One click: a judge job over exactly the rollouts humans labeled under `labels`, scored by `version`."""
    try:
        labels = _version_param(project, request.POST.get("labels"), [])
        version = _version_param(project, request.POST.get("version"), [])
        if labels is None or version is None:
            raise ApplicationError("Choose the labeled version and the version to judge with.")
        endpoint_id = parse_id(request.POST.get("endpoint"), field="endpoint")
        endpoint = project.endpoints.filter(pk=endpoint_id).first() if endpoint_id else None
        job = services.labeled_set_rejudge(project=project, labels=labels, rubric_version=version,
                                           endpoint=endpoint, created_by=request.user)
    except ApplicationError as error:
        return _align_page(request, project, request.POST, rejudge_error=error, status=error.status)
    messages.success(request, f"Judge job #{job.pk} re-judges the {len(job.selection['ids'])} labeled rollouts with {version}.")
    return redirect("judging:detail", project.pk, job.pk)
