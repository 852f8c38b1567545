"""Live preview ("try it"): score a few rollouts, or a pasted completion, with a rubric version or an unsaved spec.

Programmatic criteria are scored in the request; judge criteria go to a real judge call on the `judge` queue
(workers.judging.rubric_preview) and the page polls the job row. A preview writes no CriterionScore or RolloutScore:
trying a rubric never changes the scores a project has.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from training.rubrics.engine import RubricEngine, aggregate, score_programmatic
from training.rubrics.spec import JudgeCriterion, RubricSpec
from training.rubrics.types import CriterionResult
from training.rubrics.types import Rollout as EngineRollout
from webapp.core import safejson
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Project
from webapp.endpoints.models import ModelEndpoint
from webapp.rollouts.models import Rollout
from webapp.rubric_tools.jobs import tool_job_claim, tool_job_fail, tool_job_finish
from webapp.rubrics.models import RubricToolJob, RubricVersion
from webapp.rubrics.services import rubric_spec_validate
from webapp.tasks.models import Task

PREVIEW_MAX_ROLLOUTS = 8
PREVIEW_MAX_PASTED_CHARS = 50_000


def spec_from_json(text: str, *, field: str = "spec_json") -> dict:
    """The spec an editor posts as JSON text; a readable error at `field` when it is not a JSON object."""
    try:
        spec = safejson.loads(text or "")
    except json.JSONDecodeError as error:
        raise ApplicationError(f"The spec is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}.",
                               field=field) from error
    if not isinstance(spec, dict):
        raise ApplicationError("The spec must be a JSON object with a 'criteria' list.", field=field)
    return spec


def preview_candidates(project: Project, task: Task | None, *, limit: int = 30) -> QuerySet[Rollout]:
    """Recent scorable rollouts to choose from: the rubric's task when it has one, else the project's."""
    rollouts = Rollout.objects.filter(project=project, error="")
    if task is not None:
        rollouts = rollouts.filter(task=task)
    return rollouts.select_related("example").defer("messages", "metadata").order_by("-pk")[:limit]


def _item(label: str, rollout: EngineRollout, rollout_id: int | None = None) -> dict[str, Any]:
    return {"label": label, "rollout_id": rollout_id, "rollout": asdict(rollout)}


def _engine_rollout(item: dict[str, Any]) -> EngineRollout:
    return EngineRollout(**item["rollout"])


def _result_dict(result: CriterionResult) -> dict[str, Any]:
    return {k: v for k, v in result.to_dict().items() if k not in ("judge_fingerprint",)}


def _programmatic(spec: RubricSpec, rollout: EngineRollout) -> dict[str, dict[str, Any]]:
    allowlist = settings.RUBRICON_PYTHON_REWARD_ALLOWLIST
    return {
        c.key: _result_dict(score_programmatic(c, rollout, python_allowlist=allowlist))
        for c in spec.criteria if not isinstance(c, JudgeCriterion)
    }


def _totals(spec: RubricSpec, criteria: dict[str, dict[str, Any]]) -> dict[str, Any]:
    score = aggregate(spec, {k: CriterionResult(**v) for k, v in criteria.items()})
    return {"total": score.total, "gated_by": score.gated_by, "reason": score.reason}


@transaction.atomic
def rubric_preview_create(
    *, project: Project, spec: dict, version: RubricVersion | None = None, task: Task | None = None,
    rollout_ids: list[int] | None = None, completion: str = "", prompt: str = "", reference: str = "",
    endpoint: ModelEndpoint | None = None, created_by=None, enqueue: bool = True,
) -> RubricToolJob:
    """Score programmatic criteria now; queue the judge criteria, if any, as one preview job."""
    if version is not None and version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", field="rubric_version")
    if endpoint is not None and endpoint.project_id != project.pk:
        raise ApplicationError("That endpoint belongs to another project.", field="endpoint")
    parsed = rubric_spec_validate(spec)
    rollout_ids = list(dict.fromkeys(rollout_ids or []))
    if len(rollout_ids) > PREVIEW_MAX_ROLLOUTS:
        raise ApplicationError(f"Choose at most {PREVIEW_MAX_ROLLOUTS} rollouts for a preview.", field="rollouts")
    if len(completion) > PREVIEW_MAX_PASTED_CHARS:
        raise ApplicationError(f"The pasted completion is longer than {PREVIEW_MAX_PASTED_CHARS:,} characters.",
                               field="completion")
    from webapp.judging.services import engine_rollout

    rollouts = list(Rollout.objects.filter(project=project, pk__in=rollout_ids).select_related("example"))
    if len(rollouts) != len(rollout_ids):
        raise ApplicationError("Some chosen rollouts do not exist in this project.", field="rollouts")
    items = [_item(f"Rollout #{r.pk}", engine_rollout(r), r.pk) for r in sorted(rollouts, key=lambda r: r.pk)]
    if completion.strip():
        items.append(_item("Pasted completion", EngineRollout(
            completion=completion, prompt=prompt or None, reference=reference.strip() or None)))
    if not items:
        raise ApplicationError("Choose at least one rollout or paste a completion to preview.", field="rollouts")
    needs_judge = bool(parsed.judge_criteria)
    if needs_judge and endpoint is None:
        keys = ", ".join(c.key for c in parsed.judge_criteria)
        raise ApplicationError(f"This rubric has LM-judge criteria ({keys}); choose a judge endpoint.",
                               field="endpoint")
    results = []
    for item in items:
        criteria = _programmatic(parsed, _engine_rollout(item))
        results.append({"criteria": criteria, **({} if needs_judge else _totals(parsed, criteria))})
    now = timezone.now()
    job = RubricToolJob.objects.create(
        project=project, kind=RubricToolJob.Kind.PREVIEW, rubric_version=version,
        task=task or (version.rubric.task if version is not None else None), endpoint=endpoint if needs_judge else None,
        spec=spec, params={"items": items}, result={"items": results},
        status=JobStatus.PENDING if needs_judge else JobStatus.SUCCEEDED,
        started_at=None if needs_judge else now, finished_at=None if needs_judge else now, created_by=created_by,
    )
    if needs_judge and enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.judging.rubric_preview", job_id=job.pk)
    return job


def rubric_preview_execute(*, job_id: int) -> None:
    """Worker side: score every item with the judge (programmatic criteria again, so the totals are one pass)."""
    from webapp.judging.judges import judge_for_endpoint

    job = tool_job_claim(job_id=job_id, kind=RubricToolJob.Kind.PREVIEW)
    if job is None:
        return
    if job.endpoint is None:
        tool_job_fail(job_id=job.pk, error="The judge endpoint was deleted; choose another and preview again.")
        return
    spec = rubric_spec_validate(job.spec)
    engine = RubricEngine(spec, judge=judge_for_endpoint(job.endpoint),
                          python_allowlist=settings.RUBRICON_PYTHON_REWARD_ALLOWLIST)
    scores = async_to_sync(engine.ascore_many)([_engine_rollout(i) for i in job.params["items"]])
    items = [
        {"criteria": {k: _result_dict(r) for k, r in score.criteria.items()}, "total": score.total,
         "gated_by": score.gated_by, "reason": score.reason}
        for score in scores
    ]
    tool_job_finish(job=job, result={"items": items, "judge_fingerprint": engine.judge_fingerprint})


def preview_rows(job: RubricToolJob) -> dict[str, Any]:
    """The preview as the page shows it: one card per item, criteria in spec order with their normalized share."""
    criteria = job.spec.get("criteria", [])
    weight_sum = sum(float(c.get("weight", 1.0)) for c in criteria) or 1.0
    waiting = job.status in (JobStatus.PENDING, JobStatus.RUNNING)
    cards = []
    for item, result in zip(job.params.get("items", []), job.result.get("items", []), strict=False):
        rows = []
        for c in criteria:
            scored = result["criteria"].get(c["key"])
            rows.append({
                "key": c["key"], "title": c.get("title", c["key"]), "kind": c.get("kind"),
                "share": float(c.get("weight", 1.0)) / weight_sum, "result": scored,
                "pending": scored is None and waiting,
            })
        rollout = item["rollout"]
        cards.append({
            "label": item["label"], "rollout_id": item.get("rollout_id"), "completion": rollout["completion"],
            "prompt": rollout.get("prompt") or "", "reference": rollout.get("reference") or "", "rows": rows,
            "total": result.get("total"), "has_total": "total" in result, "gated_by": result.get("gated_by"),
            "reason": result.get("reason", ""),
        })
    judge_errors = sum(1 for card in cards for row in card["rows"]
                       if row["kind"] == "judge" and row["result"] and row["result"].get("error"))
    return {"cards": cards, "waiting": waiting, "judge_errors": judge_errors}
