"""The side-by-side comparison page: two sides chosen by name, a table per example, sorted and filtered with htmx
(logic in webapp/compare/selectors.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from webapp.compare import selectors
from webapp.core.errors import ApplicationError
from webapp.core.http import AppRequest
from webapp.core.models import Project
from webapp.core.params import parse_float, parse_id, parse_int
from webapp.core.permissions import Action, project_view, role_allows
from webapp.core.visibility import scores_page
from webapp.reviews.comparisons import comparison_item_open, comparison_return
from webapp.rollouts.models import Rollout
from webapp.rubrics.models import RubricVersion
from webapp.tasks.models import Split

# Per side: its rollouts (one of a generation job, a training run at some steps, a checkpoint — its run up to it —
# or an import), then the rubric version and the judge job that score them.
SOURCES = ("job", "run", "checkpoint", "import")
SIDE_PARAMS = tuple(f"{side}_{name}" for side in "ab" for name in (*SOURCES, "version", "judge"))


def _id_or_none(raw: str | None, name: str) -> int | None:
    try:
        return parse_id(raw, field=name)
    except ApplicationError:
        return None  # a malformed id names nothing: the picker shows "choose"


def _side_ids(params: QueryDict) -> tuple[dict[str, int | None], dict[str, str]]:
    """Each side's ids, from the pickers (`a_src` = "run:3": one select lists jobs, runs, checkpoints and imports by
    name) or from links that name them (`a_job=7`), and each side's steps."""
    ids = {name: _id_or_none(params.get(name), name) for name in SIDE_PARAMS}
    for side in "ab":
        kind, _, value = params.get(f"{side}_src", "").partition(":")
        if kind in SOURCES:
            for source in SOURCES:
                ids[f"{side}_{source}"] = None
            ids[f"{side}_{kind}"] = _id_or_none(value, f"{side}_src")
    steps = {side: params.get(f"{side}_steps", "").strip()[:40] for side in "ab"}
    return ids, steps


def _names_rollouts(ids: dict[str, int | None], side: str) -> bool:
    return any(ids[f"{side}_{source}"] is not None for source in SOURCES)


def _source_choice(ids: dict[str, int | None], side: str) -> str:
    """The picker's value for the side's rollouts ("" = none chosen)."""
    for source in SOURCES:
        if ids[f"{side}_{source}"] is not None:
            return f"{source}:{ids[f'{side}_{source}']}"
    return ""


def _filters(params: QueryDict) -> tuple[selectors.Filters, list[str]]:
    errors: list[str] = []

    def number(name: str, low: float, high: float) -> float | None:
        try:
            return parse_float(params.get(name), field=name, minimum=low, maximum=high)
        except ApplicationError as error:
            errors.append(error.message)
            return None

    split = params.get("split", "")
    sort = params.get("sort", "abs")
    filters = selectors.Filters(
        split=split if split in Split.values else "", q=params.get("q", "").strip()[:200].replace("\x00", ""),
        score_min=number("score_min", 0, 1), score_max=number("score_max", 0, 1), diff_min=number("diff_min", 0, 1),
        sort=sort if sort in selectors.SORTS else "abs",
    )
    return filters, errors


@require_GET
@project_view(Action.VIEW)
@scores_page
def compare(request: AppRequest, project: Project) -> HttpResponse:
    params = request.GET
    ids, steps = _side_ids(params)
    if not _names_rollouts(ids, "b") and _names_rollouts(ids, "a"):
        # B shows A's rollouts (two versions or two judges), or the same run at other steps.
        for source in SOURCES:
            ids[f"b_{source}"] = ids[f"a_{source}"]
        steps["b"] = steps["b"] or steps["a"]
    if ids["b_version"] is None and ids["b_judge"] is None:  # B scored as A unless told otherwise
        ids["b_version"], ids["b_judge"] = ids["a_version"], ids["a_judge"]
    filters, errors = _filters(params)
    status = 200
    context: dict = {"ids": ids, "steps": steps, "filters": filters, "errors": errors, "sorts": selectors.SORTS,
                     "splits": Split.choices, "can_label": role_allows(request.project_role, Action.LABEL),
                     "choice": {side: _source_choice(ids, side) for side in "ab"}}
    try:
        sides = []
        for side in "ab":
            rollouts = selectors.rollouts_build(
                project=project, name=side.upper(), job_id=ids[f"{side}_job"], run_id=ids[f"{side}_run"],
                steps=steps[side], checkpoint_id=ids[f"{side}_checkpoint"], import_id=ids[f"{side}_import"])
            sides.append(selectors.side_build(project=project, rollouts=rollouts, version_id=ids[f"{side}_version"],
                                              judge_id=ids[f"{side}_judge"], name=side.upper()))
        a, b = sides
    except ApplicationError as error:
        a = b = None
        errors.append(error.message)
        status = error.status
    if a is not None and b is not None:
        try:
            page = parse_int(params.get("page"), field="page", default=1, minimum=1, maximum=10**6) or 1
        except ApplicationError:
            page = 1
        context.update(a=a, b=b, result=selectors.comparison_page(a=a, b=b, filters=filters, page=page))
    query: dict[str, object] = {k: v for k, v in ((n, ids[n]) for n in SIDE_PARAMS) if v is not None}
    query.update({f"{side}_steps": steps[side] for side in "ab" if steps[side] and ids[f"{side}_run"] is not None})
    context["sides_query"] = urlencode(query)
    context["hidden"] = list(query.items())
    keep = {**query, **{k: v for k, v in (("split", filters.split), ("q", filters.q), ("sort", filters.sort)) if v}}
    for name in ("score_min", "score_max", "diff_min"):
        if getattr(filters, name) is not None:
            keep[name] = getattr(filters, name)
    context["query"] = urlencode(keep)
    if request.htmx and "a" in context:
        return render(request, "compare/compare.html#rows", context)
    context.update(sources=[
        ("Generation jobs", [(f"job:{j.pk}", selectors.job_label(j)) for j in selectors.picker_jobs(project)]),
        ("Training runs (their rollouts; steps below)",
         [(f"run:{r.pk}", selectors.run_label(r)) for r in selectors.picker_runs(project)]),
        ("Checkpoints (the run's rollouts up to it)",
         [(f"checkpoint:{c.pk}", selectors.checkpoint_label(c)) for c in selectors.picker_checkpoints(project)]),
        ("Imports", [(f"import:{i.pk}", selectors.import_label(i)) for i in selectors.picker_imports(project)]),
    ])
    context.update(
                   versions=list(selectors.picker_versions(project)),
                   judge_jobs=[(j.pk, selectors.judge_job_label(j)) for j in selectors.picker_judge_jobs(project)])
    return render(request, "compare/compare.html", context, status=status)


@require_POST
@project_view(Action.LABEL)
@scores_page
def compare_label(request: AppRequest, project: Project) -> HttpResponse:
    """Open the pairwise label of one row: the pair's item in the side-by-side queue, created or reused."""
    version_id = parse_id(request.POST.get("version"), field="version")
    a_id = parse_id(request.POST.get("a"), field="a")
    b_id = parse_id(request.POST.get("b"), field="b")
    if version_id is None or a_id is None or b_id is None:
        raise ApplicationError("Choose a row with two rollouts and a rubric version to label.", status=400)
    version = get_object_or_404(RubricVersion.objects.select_related("rubric"), rubric__project=project, pk=version_id)
    rollouts = {r.pk: r for r in Rollout.objects.filter(project=project, pk__in=[a_id, b_id])}
    if a_id not in rollouts or b_id not in rollouts:
        raise ApplicationError("Those rollouts do not exist in this project.", status=404)
    item = comparison_item_open(project=project, rubric_version=version, rollout_a=rollouts[a_id],
                                rollout_b=rollouts[b_id], annotator=request.user)
    url = reverse("reviews:item", args=[project.pk, item.queue.pk, item.pk])
    back = comparison_return(request.POST.get("back"), project)
    return redirect(f"{url}?{urlencode({'back': back})}" if back else url)
