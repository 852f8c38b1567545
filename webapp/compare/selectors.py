"""Side-by-side comparison of rollouts on the same examples (issue 19, Build).

A comparison has two *sides*. A side is the rollouts of one generation job scored under one rubric version by one
judge (its fingerprint). The four comparisons practitioners ask for are choices of the two sides:

- model A vs model B: two generation jobs (two endpoints), one rubric version;
- base vs checkpoint N: the two generation jobs of a checkpoint evaluation;
- rubric v1 vs v2: one generation job, two rubric versions (the same rollouts scored twice);
- judge A vs judge B: one generation job, one rubric version, two judge jobs (two fingerprints).

Rows pair side A's rollout with side B's rollout of the same example and sample index (the same rollout when both
sides name one job). One SQL statement reads a page of rows with both completions, both totals and their difference
(joins, no query per row); a second counts the rows for the pager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import (
    Count,
    Max,
    QuerySet,
)

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.judging.models import PROGRAMMATIC, JudgeJob, RolloutScore
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rubrics.models import RubricVersion
from webapp.tasks.models import Example

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
        if self.job.checkpoint is not None:
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
    checkpoint = f" · step {job.checkpoint.step} checkpoint" if job.checkpoint is not None else ""
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


_ROLLOUT = Rollout._meta.db_table
_EXAMPLE = Example._meta.db_table
_SCORE = RolloutScore._meta.db_table
# Side A's rollouts, their partner on side B (same example and sample: at most one, by the unique constraint on
# job, example and sample) and each side's total (at most one per rollout, version and judge): joins, not correlated
# subqueries, so sorting 10,000 rows by the difference reads each table once.
_FROM = f"""
    FROM {_ROLLOUT} a
    JOIN {_EXAMPLE} e ON e.id = a.example_id
    LEFT JOIN {_ROLLOUT} b ON b.job_id = %(b_job)s AND b.example_id = a.example_id AND b.sample_index = a.sample_index
    LEFT JOIN {_SCORE} sa ON sa.rollout_id = a.id AND sa.rubric_version_id = %(a_version)s
         AND sa.judge_fingerprint = %(a_fp)s
    LEFT JOIN {_SCORE} sb ON sb.rollout_id = b.id AND sb.rubric_version_id = %(b_version)s
         AND sb.judge_fingerprint = %(b_fp)s
    WHERE a.job_id = %(a_job)s{{where}}
"""
_DIFF = "(sb.total - sa.total)"
_ORDER = {
    "diff": f"CASE WHEN {_DIFF} IS NULL THEN 1 ELSE 0 END, {_DIFF} DESC,",
    "-diff": f"CASE WHEN {_DIFF} IS NULL THEN 1 ELSE 0 END, {_DIFF} ASC,",
    "abs": f"CASE WHEN {_DIFF} IS NULL THEN 1 ELSE 0 END, ABS({_DIFF}) DESC,",
    "example": "",
}


def _like(text: str) -> str:
    return "%" + text.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _statement(*, a: Side, b: Side, filters: Filters) -> tuple[str, dict[str, Any]]:
    """The FROM … WHERE of a comparison and its parameters."""
    params: dict[str, Any] = {
        "a_job": a.job.pk, "b_job": b.job.pk,
        "a_version": a.version.pk if a.version else None, "a_fp": a.fingerprint or "",
        "b_version": b.version.pk if b.version else None, "b_fp": b.fingerprint or "",
    }
    where = []
    if filters.split:
        where.append("e.split = %(split)s")
        params["split"] = filters.split
    if filters.q:
        params["q"] = _like(filters.q)
        texts = ["a.completion", "e.prompt", *(["b.completion"] if a.job.pk != b.job.pk else [])]
        where.append("(" + " OR ".join(f"UPPER({t}) LIKE %(q)s ESCAPE '\\'" for t in texts) + ")")
    if filters.score_min is not None:
        where.append("(sa.total >= %(score_min)s OR sb.total >= %(score_min)s)")
        params["score_min"] = filters.score_min
    if filters.score_max is not None:
        where.append("(sa.total <= %(score_max)s OR sb.total <= %(score_max)s)")
        params["score_max"] = filters.score_max
    if filters.diff_min is not None:
        where.append(f"ABS({_DIFF}) >= %(diff_min)s")
        params["diff_min"] = filters.diff_min
    return _FROM.format(where="".join(f" AND {w}" for w in where)), params


def comparison_page(*, a: Side, b: Side, filters: Filters, page: int = 1, size: int = PAGE_SIZE) -> ComparisonPage:
    """One page of rows: side A's rollouts (with their examples) annotated with b_id, b_completion, b_error,
    score_a, score_b and diff, in one statement; a second counts the rows for the pager."""
    body, params = _statement(a=a, b=b, filters=filters)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) {body}", params)
        total = int(cursor.fetchone()[0])
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    order = _ORDER.get(filters.sort, _ORDER["abs"])
    sql = (f"SELECT a.*, b.id AS b_id, b.completion AS b_completion, b.error AS b_error, sa.total AS score_a,"
           f" sb.total AS score_b, {_DIFF} AS diff,"
           f" e.id AS e_id, e.external_id AS e_external_id, e.prompt AS e_prompt, e.split AS e_split"
           f" {body} ORDER BY {order} a.example_id, a.sample_index, a.id LIMIT %(limit)s OFFSET %(offset)s")
    rows = list(Rollout.objects.raw(sql, {**params, "limit": size, "offset": (page - 1) * size}))
    for row in rows:  # the example's columns came with the row: no query per row
        extra: Any = row  # raw() adds the joined columns as attributes
        row.example = Example(id=extra.e_id, task_id=row.task_id, external_id=extra.e_external_id,
                              prompt=extra.e_prompt, split=extra.e_split)
    return ComparisonPage(rows, total, page, pages, same_rollouts=a.job.pk == b.job.pk)
