"""Side-by-side comparison of rollouts on the same examples (issue 19, Build).

A comparison has two *sides*. A side is the rollouts of one generation job scored under one rubric version by one
judge (its fingerprint). The four comparisons practitioners ask for are choices of the two sides:

- model A vs model B: two generation jobs (two endpoints), one rubric version;
- base vs checkpoint N: the two generation jobs of a checkpoint evaluation;
- rubric v1 vs v2: one generation job, two rubric versions (the same rollouts scored twice);
- judge A vs judge B: one generation job, one rubric version, two judge jobs (two fingerprints).

Rows pair side A's rollout with side B's rollout of the same example and sample index (the same rollout when both
sides name one job). One SQL statement reads a page of rows with both completions, both totals and their difference
(correlated subqueries, no query per row); a second counts the rows for the pager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Abs

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.judging.models import PROGRAMMATIC, JudgeJob, RolloutScore
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rubrics.models import RubricVersion

PAGE_SIZE = 25
PICKER_LIMIT = 200
SORTS = {
    "diff": "B − A, largest first",
    "-diff": "B − A, smallest first",
    "abs": "|B − A|, largest first",
    "example": "Example",
}


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a job's rollouts scored by one rubric version and judge."""

    job: GenerationJob
    version: RubricVersion | None
    fingerprint: str | None
    judge_job: JudgeJob | None = None

    @property
    def label(self) -> str:
        """What a user reads for the side: the model (or checkpoint), the rubric version, the judge."""
        who = self.job.model_name or f"generation #{self.job.pk}"
        if self.job.checkpoint_id:
            who = f"{who} (step {self.job.checkpoint.step} checkpoint)"
        parts = [who]
        if self.version is not None:
            parts.append(f"{self.version.rubric.name} v{self.version.number}")
        if self.judge_job is not None and self.judge_job.endpoint is not None:
            parts.append(f"judge {self.judge_job.endpoint.name}")
        elif self.fingerprint == PROGRAMMATIC:
            parts.append("programmatic checks")
        return " · ".join(parts)


@dataclass(frozen=True)
class Filters:
    split: str = ""
    q: str = ""
    score_min: float | None = None
    score_max: float | None = None
    diff_min: float | None = None
    sort: str = "abs"


@dataclass(frozen=True)
class ComparisonPage:
    rows: list[Rollout]  # side A's rollouts, annotated with b_*, score_a, score_b, diff
    total: int
    page: int
    pages: int
    same_rollouts: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


# --- pickers: names, never ids ---------------------------------------------------------------------------------------


def job_label(job: GenerationJob) -> str:
    checkpoint = f" · step {job.checkpoint.step} checkpoint" if job.checkpoint_id else ""
    return f"{job.model_name or 'generation'}{checkpoint} · {job.task.name} · {job.created_at:%Y-%m-%d %H:%M} (#{job.pk})"


def judge_job_label(job: JudgeJob) -> str:
    judge = job.endpoint.name if job.endpoint is not None else "programmatic checks"
    version = job.rubric_version
    return f"{version.rubric.name} v{version.number} · {judge} · {job.created_at:%Y-%m-%d %H:%M} (#{job.pk})"


def picker_jobs(project: Project) -> QuerySet[GenerationJob]:
    return (GenerationJob.objects.filter(project=project).select_related("task", "checkpoint")
            .order_by("-id")[:PICKER_LIMIT])


def picker_versions(project: Project) -> QuerySet[RubricVersion]:
    return RubricVersion.objects.filter(rubric__project=project).select_related("rubric").order_by("-id")[:PICKER_LIMIT]


def picker_judge_jobs(project: Project) -> QuerySet[JudgeJob]:
    return (JudgeJob.objects.filter(project=project).select_related("rubric_version__rubric", "endpoint")
            .order_by("-id")[:PICKER_LIMIT])


# --- sides -----------------------------------------------------------------------------------------------------------


def side_build(*, project: Project, job_id: int | None, version_id: int | None, judge_id: int | None,
               name: str) -> Side | None:
    """The side named by a generation job, a rubric version and (optionally) a judge job; None when no job is named.

    A judge job fixes both the rubric version and the judge. With a version alone the judge is the one that scored
    most of the job's rollouts under it (the newest on a tie)."""
    if job_id is None:
        return None
    job = (GenerationJob.objects.filter(project=project, pk=job_id).select_related("task", "checkpoint").first())
    if job is None:
        raise ApplicationError(f"Side {name}: that generation job does not exist in this project.", status=404)
    judge_job = None
    version = None
    if judge_id is not None:
        judge_job = (JudgeJob.objects.filter(project=project, pk=judge_id)
                     .select_related("rubric_version__rubric", "endpoint").first())
        if judge_job is None:
            raise ApplicationError(f"Side {name}: that judge job does not exist in this project.", status=404)
        version = judge_job.rubric_version
    elif version_id is not None:
        version = RubricVersion.objects.filter(rubric__project=project, pk=version_id).select_related("rubric").first()
        if version is None:
            raise ApplicationError(f"Side {name}: that rubric version does not exist in this project.", status=404)
    fingerprint = None
    if judge_job is not None:
        fingerprint = judge_job.judge_fingerprint or PROGRAMMATIC
    elif version is not None:
        fingerprint = (RolloutScore.objects.filter(rollout__job=job, rubric_version=version)
                       .values("judge_fingerprint").annotate(n=Count("id"), newest=Max("id"))
                       .order_by("-n", "-newest").values_list("judge_fingerprint", flat=True).first())
    return Side(job=job, version=version, fingerprint=fingerprint, judge_job=judge_job)


# --- rows ------------------------------------------------------------------------------------------------------------


def _score(side: Side, rollout: dict[str, Any]) -> Subquery | Value:
    if side.version is None or side.fingerprint is None:
        return Value(None, output_field=FloatField())
    return Subquery(
        RolloutScore.objects.filter(rubric_version_id=side.version.pk, judge_fingerprint=side.fingerprint, **rollout)
        .values("total")[:1], output_field=FloatField())


def comparison_rows(*, a: Side, b: Side, filters: Filters) -> QuerySet[Rollout]:
    """Side A's rollouts with their partner on side B (same example and sample index) and both totals, filtered and
    sorted; rows whose example B never answered keep B empty."""
    same = a.job.pk == b.job.pk
    partner = Rollout.objects.filter(job_id=b.job.pk, example_id=OuterRef("example_id"),
                                     sample_index=OuterRef("sample_index"))
    rows = (
        Rollout.objects.filter(job_id=a.job.pk, example__isnull=False)
        .select_related("example")
        .annotate(
            b_id=Subquery(partner.values("pk")[:1], output_field=IntegerField()),
            b_completion=Subquery(partner.values("completion")[:1], output_field=TextField()),
            b_error=Subquery(partner.values("error")[:1], output_field=TextField()),
            score_a=_score(a, {"rollout_id": OuterRef("pk")}),
            score_b=_score(b, {"rollout__job_id": b.job.pk, "rollout__example_id": OuterRef("example_id"),
                               "rollout__sample_index": OuterRef("sample_index")}),
        )
        .annotate(diff=F("score_b") - F("score_a"))
        .annotate(abs_diff=Abs(F("diff")))
    )
    if filters.split:
        rows = rows.filter(example__split=filters.split)
    if filters.q:
        text = Q(completion__icontains=filters.q) | Q(example__prompt__icontains=filters.q)
        if not same:
            text |= Q(b_completion__icontains=filters.q)
        rows = rows.filter(text)
    if filters.score_min is not None:
        rows = rows.filter(Q(score_a__gte=filters.score_min) | Q(score_b__gte=filters.score_min))
    if filters.score_max is not None:
        rows = rows.filter(Q(score_a__lte=filters.score_max) | Q(score_b__lte=filters.score_max))
    if filters.diff_min is not None:
        rows = rows.filter(abs_diff__gte=filters.diff_min)
    scored_first = Case(When(diff__isnull=True, then=Value(1)), default=Value(0), output_field=IntegerField())
    order = {
        "diff": [scored_first, F("diff").desc()],
        "-diff": [scored_first, F("diff").asc()],
        "abs": [scored_first, F("abs_diff").desc()],
        "example": [],
    }.get(filters.sort, [scored_first, F("abs_diff").desc()])
    return rows.order_by(*order, "example_id", "sample_index", "pk")


def comparison_page(*, a: Side, b: Side, filters: Filters, page: int = 1, size: int = PAGE_SIZE) -> ComparisonPage:
    """One page of rows (one statement) and the row count (a second)."""
    rows = comparison_rows(a=a, b=b, filters=filters)
    total = rows.order_by().count()
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    items = list(rows[(page - 1) * size: page * size])
    return ComparisonPage(items, total, page, pages, same_rollouts=a.job.pk == b.job.pk)
