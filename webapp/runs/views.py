from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_state_changed
from webapp.core.models import JobStatus, Project
from webapp.core.params import parse_id, parse_ids, parse_int
from webapp.core.permissions import Action, project_view
from webapp.core.visibility import scores_page
from webapp.reviews.calibration import calibration_status
from webapp.reviews.services import review_queue_for_run
from webapp.reviews.watch import run_watch
from webapp.runs import charts, selectors, services
from webapp.runs.forms import EvaluateCheckpointForm, ResumeRunForm, RunReviewForm, TrainingRunForm


@require_GET
@project_view(Action.VIEW)
def run_list(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "runs/run_list.html", {"runs": selectors.run_list(project)[:100]})


def _create_context(project: Project, form: TrainingRunForm) -> dict:
    version_id = parse_id(form.data.get("rubric_version"), field="rubric_version")
    version = form.fields["rubric_version"].queryset.filter(pk=version_id).first() if version_id else None
    return {
        "form": form, "calibration": calibration_status(version) if version is not None else None,
        "checkpoints": selectors.project_checkpoints(project)[:50],
    }


@require_http_methods(["GET", "POST"])
@project_view(Action.EDIT)
def run_create(request: HttpRequest, project: Project) -> HttpResponse:
    if request.method == "GET":
        form = TrainingRunForm(request.GET or None, project=project, initial={"preset": "cpu-smoke"},
                               refresh_url=request.path)
        if form.is_bound:
            form.errors.clear()  # a preset or rubric switch re-renders the form; it is not a submission
        template = "runs/run_form.html#form" if request.htmx else "runs/run_form.html"
        return render(request, template, _create_context(project, form))
    form = TrainingRunForm(request.POST, project=project, refresh_url=request.path)
    if form.is_valid():
        data = form.cleaned_data
        try:
            run = services.training_run_create(
                project=project, name=data["name"], task=data["task"], split=data["split"],
                rubric_version=data["rubric_version"], preset=data["preset"], base_model=data["base_model"],
                judge_endpoint=data["judge_endpoint"], options=form.options(),
                calibration_override=data["calibration_override"], calibration_note=data["calibration_note"],
                created_by=request.user,
            )
        except ApplicationError as error:
            for item in error.extra.get("errors") or [{"field": error.field, "message": error.message}]:
                field = item["field"] if item["field"] in form.fields else None
                form.add_error(field, item["message"])
        else:
            messages.success(request, f"Run #{run.pk} queued on the train queue.")
            return redirect("runs:detail", project.pk, run.pk)
    return render(request, "runs/run_form.html", _create_context(project, form), status=400)


def _sample_step(request: HttpRequest, steps: list[int]) -> int | None:
    step = parse_int(request.GET.get("step"), field="step")
    if step is not None and step in steps:
        return step
    return steps[-1] if steps else None


@require_GET
@project_view(Action.VIEW)
@scores_page
def run_detail(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    run = selectors.run_get(project, run_id)
    metrics = selectors.run_metrics(run)
    context = {
        "run": run, "last": metrics[-1] if metrics else None, "charts": charts.run_charts(metrics, config=run.config),
        "checkpoints": selectors.run_checkpoints(run), "log_tail": selectors.run_log_tail(run),
        "live": run.status in (JobStatus.PENDING, JobStatus.RUNNING),
        "silent": selectors.run_silent(run),
    }
    forms = {"evaluate_form": EvaluateCheckpointForm(run=run),
             "resume_form": ResumeRunForm(run=run) if run.status in services.RESUMABLE_STATUSES else None}
    if request.htmx:  # the polled part: status, charts, log; the samples panel keeps the step the user chose
        # The forms that depend on the run's state (its checkpoints, whether it can resume) come along out of band
        # when the state moved since the page last showed it, so the page never contradicts itself.
        if changed := job_state_changed(request.GET.get("state"), run, len(context["checkpoints"])):
            context.update(forms)
        return render(request, "runs/run_detail.html#live", {**context, "state_changed": changed})
    steps = selectors.run_sample_steps(run)
    step = _sample_step(request, steps)
    context.update(sample_steps=steps, sample_step=step,
                   samples=selectors.run_samples(run, step) if step is not None else [],
                   **forms, **selectors.run_lineage(run), **_evaluations_context(run), **_watch_context(run))
    return render(request, "runs/run_detail.html", context)


def _watch_context(run) -> dict:
    watch = run_watch(run)
    return {"watch": watch, "watch_chart": charts.watch_chart(watch.steps), "review_form": RunReviewForm(),
            "watch_live": run.status in (JobStatus.PENDING, JobStatus.RUNNING) or bool(watch.queues)}


@require_GET
@project_view(Action.VIEW)
@scores_page
def run_watch_fragment(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    """The reward-hacking watch section, polled: queues, labels, the reward vs quality chart, flags, the alert."""
    run = selectors.run_get(project, run_id)
    if not request.htmx:
        return redirect(f"{reverse('runs:detail', args=[project.pk, run.pk])}#watch")
    return render(request, "runs/_watch.html", {"run": run, **_watch_context(run)})


@require_POST
@project_view(Action.EDIT)
def run_review(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    """"Send to review": a queue that follows the run (its new training rollouts keep being sampled into it)."""
    run = selectors.run_get(project, run_id)
    form = RunReviewForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Cannot send to review: {_form_error(form)}")
        return redirect(f"{reverse('runs:detail', args=[project.pk, run.pk])}#watch")
    try:
        queue = review_queue_for_run(run=run, created_by=request.user, **form.cleaned_data)
    except ApplicationError as error:
        messages.error(request, f"Cannot send to review: {error.message}")
        return redirect(f"{reverse('runs:detail', args=[project.pk, run.pk])}#watch")
    messages.success(request, f"Queue {queue.name} follows run #{run.pk}: {queue.items.count()} items so far, more as "
                              "the run trains.")
    return redirect("reviews:detail", project.pk, queue.pk)


def _evaluations_context(run) -> dict:
    evaluations = selectors.run_evaluations(run)
    return {"evaluations": evaluations, "evaluations_live": any(item["live"] for item in evaluations)}


@require_GET
@project_view(Action.VIEW)
@scores_page
def run_evaluations(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    run = selectors.run_get(project, run_id)
    if not request.htmx:
        return redirect(f"{reverse('runs:detail', args=[project.pk, run.pk])}#evaluations")
    return render(request, "runs/run_detail.html#evaluations", {"run": run, **_evaluations_context(run)})


def _form_error(form) -> str:
    return "; ".join(f"{form[name].label}: {' '.join(errors)}" if name in form.fields else " ".join(errors)
                     for name, errors in form.errors.items())


@require_POST
@project_view(Action.EDIT)
def run_evaluate(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    run = selectors.run_get(project, run_id)
    form = EvaluateCheckpointForm(request.POST, run=run)
    if not form.is_valid():
        messages.error(request, f"Cannot evaluate: {_form_error(form)}")
    else:
        data = form.cleaned_data
        try:
            evaluation = services.checkpoint_evaluation_create(
                run=run, checkpoint=data["checkpoint"], endpoint=data["endpoint"],
                samples_per_example=data["samples_per_example"], created_by=request.user,
            )
        except ApplicationError as error:
            messages.error(request, f"Cannot evaluate: {error.message}")
        else:
            messages.success(request, f"Evaluating the step {evaluation.checkpoint.step} checkpoint against the base "
                                      f"model on the {evaluation.split} split.")
    return redirect(f"{reverse('runs:detail', args=[project.pk, run.pk])}#evaluations")


@require_POST
@project_view(Action.EDIT)
def run_resume(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    run = selectors.run_get(project, run_id)
    form = ResumeRunForm(request.POST, run=run)
    if not form.is_valid():
        messages.error(request, f"Cannot resume: {_form_error(form)}")
        return redirect("runs:detail", project.pk, run.pk)
    try:
        child = services.training_run_resume(run=run, checkpoint=form.cleaned_data["checkpoint"],
                                             max_steps=form.cleaned_data["max_steps"], created_by=request.user)
    except ApplicationError as error:
        messages.error(request, f"Cannot resume: {error.message}")
        return redirect("runs:detail", project.pk, run.pk)
    messages.success(request, f"Run #{child.pk} continues run #{run.pk} from step {child.resumed_from.step}.")
    return redirect("runs:detail", project.pk, child.pk)


@require_GET
@project_view(Action.VIEW)
@scores_page
def run_samples(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    run = selectors.run_get(project, run_id)
    steps = selectors.run_sample_steps(run)
    step = _sample_step(request, steps)
    if not request.htmx:
        return redirect(f"{request.path.removesuffix('samples/')}?step={step or ''}")
    context = {"run": run, "sample_steps": steps, "sample_step": step,
               "samples": selectors.run_samples(run, step) if step is not None else []}
    return render(request, "runs/run_detail.html#samples", context)


@require_POST
@project_view(Action.EDIT)
def run_cancel(request: HttpRequest, project: Project, run_id: int) -> HttpResponse:
    run = selectors.run_get(project, run_id)
    if services.training_run_cancel(run=run):
        messages.success(request, f"Stopping run #{run.pk}; its metrics, rollouts and checkpoints are kept.")
    return redirect("runs:detail", project.pk, run.pk)


@require_GET
@project_view(Action.VIEW)
@scores_page
def run_compare(request: HttpRequest, project: Project) -> HttpResponse:
    ids = parse_ids(request.GET.getlist("runs"), field="runs")
    runs = selectors.runs_by_ids(project, ids)
    grouped = selectors.metrics_by_run(runs)
    context = {
        "runs": runs, "all_runs": selectors.run_list(project)[:100],
        "charts": charts.compare_charts([(f"#{r.pk} {r.name}", grouped[r.pk]) for r in runs]),
    }
    return render(request, "runs/run_compare.html", context)
