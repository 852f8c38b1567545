"""Side-by-side comparison of rollouts on the same examples (issue 19, Build).

A comparison has two *sides*. A side is a set of rollouts — one generation job's, a training run's at a step or a
range of steps (or up to a checkpoint), or one import's — scored under one rubric version by one judge (its
fingerprint). The comparisons practitioners ask for are choices of the two sides:

- model A vs model B: two generation jobs (two endpoints), one rubric version;
- base vs checkpoint N: the two generation jobs of a checkpoint evaluation, or a base job against a run's rollouts
  up to checkpoint N;
- step A vs step B of a run: the run's training rollouts at two steps (or ranges);
- an imported run (e.g. a vf-eval output) against a job, a run or another import;
- rubric v1 vs v2: one set of rollouts, two rubric versions (the same rollouts scored twice);
- judge A vs judge B: one set of rollouts, one rubric version, two judge jobs (two fingerprints).

Rows pair side A's rollout with side B's rollout of the same example and sample index (the same rollout when both
sides name the same set). A job holds at most one such rollout; a run's steps or an import may hold several, and the
newest is the partner. One SQL statement reads a page of rows with both completions, both totals and their
difference (joins, no query per row); a second counts the rows for the pager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import (
    Max,
    QuerySet,
)

from webapp.core.errors import ApplicationError
from webapp.core.models import ImportRecord, Project
from webapp.judging.models import PROGRAMMATIC, JudgeJob, RolloutScore
from webapp.rollouts.models import GenerationJob, Rollout, RolloutSource
from webapp.rubrics.models import RubricVersion
from webapp.runs.models import Checkpoint, TrainingRun
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
class Rollouts:
    """Which rollouts a side shows: exactly one of a generation job, a training run (steps `first`..`last`, both
    included; None = open-ended) or an import."""

    job: GenerationJob | None = None
    run: TrainingRun | None = None
    first: int | None = None
    last: int | None = None
    batch: ImportRecord | None = None

    @property
    def key(self) -> tuple[object, ...]:
        """Equal for two sides that show the same rollouts."""
        if self.job is not None:
            return ("job", self.job.pk)
        if self.run is not None:
            return ("run", self.run.pk, self.first, self.last)
        return ("import", self.batch.pk if self.batch else None)

    @property
    def steps(self) -> str:
        """The step range as a user types it ("40", "40-60", "-60", "40-"; "" = every step)."""
        if self.first is None and self.last is None:
            return ""
        if self.first == self.last:
            return str(self.first)
        return f"{'' if self.first is None else self.first}-{'' if self.last is None else self.last}"

    @property
    def label(self) -> str:
        if self.job is not None:
            who = self.job.model_name or f"generation #{self.job.pk}"
            if self.job.checkpoint is not None:
                who = f"{who} (step {self.job.checkpoint.step} checkpoint)"
            return who
        if self.run is not None:
            steps = self.steps
            where = (f"step {steps}" if steps and "-" not in steps else f"steps {steps}" if steps else "every step")
            return f"run {self.run.name or f'#{self.run.pk}'} · training rollouts, {where}"
        assert self.batch is not None
        return f"import {import_label(self.batch)}"

    def condition(self, alias: str, prefix: str) -> tuple[str, dict[str, Any]]:
        """The SQL condition on rollouts `alias` that selects this set, and its parameters (named `prefix`_*)."""
        if self.job is not None:
            return f"{alias}.job_id = %({prefix}_job)s", {f"{prefix}_job": self.job.pk}
        if self.run is not None:
            sql = f"{alias}.run_id = %({prefix}_run)s AND {alias}.source = %({prefix}_source)s"
            params: dict[str, Any] = {f"{prefix}_run": self.run.pk, f"{prefix}_source": RolloutSource.TRAINING.value}
            if self.first is not None:
                sql += f" AND {alias}.step >= %({prefix}_first)s"
                params[f"{prefix}_first"] = self.first
            if self.last is not None:
                sql += f" AND {alias}.step <= %({prefix}_last)s"
                params[f"{prefix}_last"] = self.last
            return sql, params
        assert self.batch is not None
        return f"{alias}.import_record_id = %({prefix}_import)s", {f"{prefix}_import": self.batch.pk}


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a set of rollouts scored by one rubric version and judge."""

    rollouts: Rollouts
    version: RubricVersion | None
    fingerprint: str | None
    judge_job: JudgeJob | None = None

    @property
    def job(self) -> GenerationJob | None:
        return self.rollouts.job

    @property
    def label(self) -> str:
        """What a user reads for the side: the model, checkpoint, run steps or import, the rubric version, the
        judge."""
        parts = [self.rollouts.label]
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


def run_label(run: TrainingRun) -> str:
    return f"{run.name or 'run'} · {run.base_model} · {run.created_at:%Y-%m-%d %H:%M} (#{run.pk})"


def checkpoint_label(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.run.name or 'run'} · step {checkpoint.step} checkpoint (#{checkpoint.run_id})"


def import_label(record: ImportRecord) -> str:
    name = record.filename or "upload"
    summary = f" · {record.summary}" if record.summary else ""
    return f"{name}{summary} · {record.created_at:%Y-%m-%d %H:%M} (#{record.pk})"


def picker_runs(project: Project) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.filter(project=project).order_by("-id")[:PICKER_LIMIT]


def picker_checkpoints(project: Project) -> QuerySet[Checkpoint]:
    return (Checkpoint.objects.filter(run__project=project).select_related("run")
            .order_by("-run_id", "-step")[:PICKER_LIMIT])


def picker_imports(project: Project) -> QuerySet[ImportRecord]:
    """Imports that brought rollouts in (an import of examples only is no side)."""
    return (ImportRecord.objects.filter(project=project, rollouts__isnull=False).distinct()
            .order_by("-id")[:PICKER_LIMIT])


def picker_jobs(project: Project) -> QuerySet[GenerationJob]:
    return (GenerationJob.objects.filter(project=project).select_related("task", "checkpoint")
            .order_by("-id")[:PICKER_LIMIT])


def picker_versions(project: Project) -> QuerySet[RubricVersion]:
    return RubricVersion.objects.filter(rubric__project=project).select_related("rubric").order_by("-id")[:PICKER_LIMIT]


def picker_judge_jobs(project: Project) -> QuerySet[JudgeJob]:
    return (JudgeJob.objects.filter(project=project).select_related("rubric_version__rubric", "endpoint")
            .order_by("-id")[:PICKER_LIMIT])


# --- sides -----------------------------------------------------------------------------------------------------------


def parse_steps(text: str) -> tuple[int | None, int | None]:
    """"40" → (40, 40); "40-60", "40-" and "-60" → a range (None = open); "" → every step. ValueError otherwise."""
    text = text.strip().replace(" ", "").replace("–", "-")
    if not text:
        return None, None
    if "-" not in text:
        step = int(text)
        return step, step
    low, _, high = text.partition("-")
    first, last = (int(low) if low else None), (int(high) if high else None)
    if first is not None and last is not None and first > last:
        first, last = last, first
    if (first is not None and first < 0) or (last is not None and last < 0):
        raise ValueError(text)
    return first, last


def checkpoint_steps(checkpoint: Checkpoint) -> tuple[int, int]:
    """The training steps that led to a checkpoint: after the run's previous checkpoint, up to this one."""
    previous = (Checkpoint.objects.filter(run_id=checkpoint.run_id, step__lt=checkpoint.step)
                .aggregate(step=Max("step"))["step"])
    return (0 if previous is None else previous + 1), checkpoint.step


def rollouts_build(*, project: Project, name: str, job_id: int | None = None, run_id: int | None = None,
                   steps: str = "", checkpoint_id: int | None = None, import_id: int | None = None) -> Rollouts | None:
    """The rollouts a side names, by the first of a generation job, a checkpoint (its run, up to it), a training run
    (at `steps`) or an import; None when none is named."""
    if job_id is not None:
        job = GenerationJob.objects.filter(project=project, pk=job_id).select_related("task", "checkpoint").first()
        if job is None:
            raise ApplicationError(f"Side {name}: that generation job does not exist in this project.", status=404)
        return Rollouts(job=job)
    if checkpoint_id is not None:
        checkpoint = Checkpoint.objects.filter(run__project=project, pk=checkpoint_id).select_related("run").first()
        if checkpoint is None:
            raise ApplicationError(f"Side {name}: that checkpoint does not exist in this project.", status=404)
        since, until = checkpoint_steps(checkpoint)
        return Rollouts(run=checkpoint.run, first=since, last=until)
    if run_id is not None:
        run = TrainingRun.objects.filter(project=project, pk=run_id).first()
        if run is None:
            raise ApplicationError(f"Side {name}: that training run does not exist in this project.", status=404)
        try:
            first, last = parse_steps(steps)
        except ValueError:
            raise ApplicationError(f"Side {name}: steps are a step (40) or a range (40-60), not {steps!r}.",
                                   field=f"{name.lower()}_steps") from None
        return Rollouts(run=run, first=first, last=last)
    if import_id is not None:
        batch = ImportRecord.objects.filter(project=project, pk=import_id).first()
        if batch is None:
            raise ApplicationError(f"Side {name}: that import does not exist in this project.", status=404)
        return Rollouts(batch=batch)
    return None


def side_build(*, project: Project, job_id: int | None = None, version_id: int | None, judge_id: int | None,
               name: str, rollouts: Rollouts | None = None) -> Side | None:
    """The side named by its rollouts (a generation job by `job_id`, or `rollouts` as `rollouts_build` found them),
    a rubric version and (optionally) a judge job; None when no rollouts are named.

    A judge job fixes both the rubric version and the judge. With a version alone the judge is the one that scored
    most of the side's rollouts under it (the newest on a tie)."""
    if rollouts is None:
        rollouts = rollouts_build(project=project, name=name, job_id=job_id)
    if rollouts is None:
        return None
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
        condition, params = rollouts.condition("r", "s")
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT sc.judge_fingerprint FROM {_SCORE} sc JOIN {_ROLLOUT} r ON r.id = sc.rollout_id"
                f" WHERE sc.rubric_version_id = %(version)s AND {condition}"
                " GROUP BY sc.judge_fingerprint ORDER BY COUNT(*) DESC, MAX(sc.id) DESC LIMIT 1",
                {**params, "version": version.pk})
            found = cursor.fetchone()
        fingerprint = found[0] if found else None
    return Side(rollouts=rollouts, version=version, fingerprint=fingerprint, judge_job=judge_job)


# --- rows ------------------------------------------------------------------------------------------------------------


_ROLLOUT = Rollout._meta.db_table
_EXAMPLE = Example._meta.db_table
_SCORE = RolloutScore._meta.db_table
# Side A's rollouts, their partner on side B (same example and sample) and each side's total (at most one per
# rollout, version and judge): joins, so sorting 10,000 rows by the difference reads each table once. A job holds at
# most one partner (the unique constraint on job, example and sample): a plain join. A run's steps or an import may
# hold several: the newest, one lookup per row in the (run or import, example, sample, id) index (a LATERAL join). The
# same set on both sides: itself.
# Rollouts without an example (an import may hold them) are listed, unpaired.
_FROM = f"""
    FROM {_ROLLOUT} a
    LEFT JOIN {_EXAMPLE} e ON e.id = a.example_id
    LEFT JOIN {{partner}}
    LEFT JOIN {_SCORE} sa ON sa.rollout_id = a.id AND sa.rubric_version_id = %(a_version)s
         AND sa.judge_fingerprint = %(a_fp)s
    LEFT JOIN {_SCORE} sb ON sb.rollout_id = b.id AND sb.rubric_version_id = %(b_version)s
         AND sb.judge_fingerprint = %(b_fp)s
    WHERE {{side_a}}{{where}}
"""


def _partner(a: Rollouts, b: Rollouts) -> tuple[str, dict[str, Any]]:
    """The join of side B's rollout `b` to side A's rollout `a` (after LEFT JOIN)."""
    if a.key == b.key:
        return f"{_ROLLOUT} b ON b.id = a.id", {}
    condition, params = b.condition("b" if b.job is not None else "c", "b")
    if b.job is not None:  # one rollout per example and sample (a unique constraint)
        return f"{_ROLLOUT} b ON {condition} AND b.example_id = a.example_id AND b.sample_index = a.sample_index", params
    # A run or an import may hold several: the newest, one lookup in the index on (run or import, example, sample, id).
    return (f"LATERAL (SELECT * FROM {_ROLLOUT} c WHERE {condition} AND c.example_id = a.example_id"
            " AND c.sample_index = a.sample_index ORDER BY c.id DESC LIMIT 1) b ON true", params)
_DIFF = "(sb.total - sa.total)"
_ORDER = {
    "diff": f"CASE WHEN {_DIFF} IS NULL THEN 1 ELSE 0 END, {_DIFF} DESC,",
    "-diff": f"CASE WHEN {_DIFF} IS NULL THEN 1 ELSE 0 END, {_DIFF} ASC,",
    "abs": f"CASE WHEN {_DIFF} IS NULL THEN 1 ELSE 0 END, ABS({_DIFF}) DESC,",
    "example": "",
}


def _like(text: str) -> str:
    """A LIKE pattern for "contains `text`", its wildcards escaped. Not upper-cased here: Postgres folds it (UPPER in
    the statement) as it folds the texts, as the rollout browser's `icontains` does; Python's str.upper() differs
    ("ß" → "SS")."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _statement(*, a: Side, b: Side, filters: Filters) -> tuple[str, dict[str, Any]]:
    """The FROM … WHERE of a comparison and its parameters."""
    side_a, a_params = a.rollouts.condition("a", "a")
    partner, b_params = _partner(a.rollouts, b.rollouts)
    params: dict[str, Any] = {
        **a_params, **b_params,
        "a_version": a.version.pk if a.version else None, "a_fp": a.fingerprint or "",
        "b_version": b.version.pk if b.version else None, "b_fp": b.fingerprint or "",
    }
    where = []
    if filters.split:
        where.append("e.split = %(split)s")
        params["split"] = filters.split
    if filters.q:
        params["q"] = _like(filters.q)
        texts = ["a.completion", "e.prompt", *(["b.completion"] if a.rollouts.key != b.rollouts.key else [])]
        where.append("(" + " OR ".join(f"UPPER({t}) LIKE UPPER(%(q)s) ESCAPE '\\'" for t in texts) + ")")
    if filters.score_min is not None:
        where.append("(sa.total >= %(score_min)s OR sb.total >= %(score_min)s)")
        params["score_min"] = filters.score_min
    if filters.score_max is not None:
        where.append("(sa.total <= %(score_max)s OR sb.total <= %(score_max)s)")
        params["score_max"] = filters.score_max
    if filters.diff_min is not None:
        where.append(f"ABS({_DIFF}) >= %(diff_min)s")
        params["diff_min"] = filters.diff_min
    return _FROM.format(partner=partner, side_a=side_a, where="".join(f" AND {w}" for w in where)), params


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
        row.example = Example(id=extra.e_id, task_id=row.task_id, external_id=extra.e_external_id or "",
                              prompt=extra.e_prompt or "", split=extra.e_split or "")
    return ComparisonPage(rows, total, page, pages, same_rollouts=a.rollouts.key == b.rollouts.key)
