"""Dry run before a big judge job: for a rubric version and a task, estimate judge calls, tokens and time from a
small sample of groups, and the share of groups whose rewards have zero variance (they teach GRPO nothing).

Flow: rubric_dry_run_create (web) → workers.judging.rubric_dry_run (queue `judge`) → rubric_dry_run_execute: sample up
to `groups` groups (rollouts of one example in one generation job share a group key), reuse stored totals of this
version, score the rest for real (judge calls are timed), render the judge prompts of the sample to count tokens
(the endpoint's tokenizer for local models, else characters / 4). Writes nothing but the job row.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.db.models import Count

from training.rubrics.engine import RubricEngine, judge_batches
from training.rubrics.prompts import build_group_prompt, build_judge_prompt
from training.rubrics.spec import RubricSpec
from training.rubrics.types import Rollout as EngineRollout
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.rollouts.models import Rollout
from webapp.rubric_tools.jobs import tool_job_claim, tool_job_fail, tool_job_finish
from webapp.rubrics.models import RubricToolJob, RubricVersion
from webapp.rubrics.services import rubric_spec_validate
from webapp.tasks.models import Task

DRY_RUN_DEFAULT_GROUPS = 8
DRY_RUN_MAX_GROUPS = 32
MAX_ROLLOUTS_PER_GROUP = 16
ZERO_VARIANCE_EPS = 1e-9


@transaction.atomic
def rubric_dry_run_create(
    *, project: Project, version: RubricVersion, task: Task, endpoint: ModelEndpoint | None = None,
    groups: int = DRY_RUN_DEFAULT_GROUPS, created_by=None, enqueue: bool = True,
) -> RubricToolJob:
    if version.rubric.project_id != project.pk:
        raise ApplicationError("That rubric version belongs to another project.", field="rubric_version")
    if task.project_id != project.pk:
        raise ApplicationError("That task belongs to another project.", field="task")
    if endpoint is not None and endpoint.project_id != project.pk:
        raise ApplicationError("That endpoint belongs to another project.", field="endpoint")
    if not 1 <= groups <= DRY_RUN_MAX_GROUPS:
        raise ApplicationError(f"Sample between 1 and {DRY_RUN_MAX_GROUPS} groups.", field="groups")
    spec = rubric_spec_validate(version.spec)
    if spec.judge_criteria and endpoint is None:
        keys = ", ".join(c.key for c in spec.judge_criteria)
        raise ApplicationError(f"This rubric has LM-judge criteria ({keys}); choose the judge endpoint to "
                               "estimate.", field="endpoint")
    if not Rollout.objects.filter(task=task, error="").exists():
        raise ApplicationError("This task has no rollouts yet: generate some first, then dry-run the rubric.",
                               field="task")
    job = RubricToolJob.objects.create(
        project=project, kind=RubricToolJob.Kind.DRY_RUN, rubric_version=version, task=task,
        endpoint=endpoint if spec.judge_criteria else None, spec=version.spec, params={"groups": groups},
        created_by=created_by,
    )
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.judging.rubric_dry_run", job_id=job.pk)
    return job


def _token_counter(endpoint: ModelEndpoint | None) -> tuple[Any, str]:
    """The endpoint's own tokenizer for local models; characters / 4 for remote ones (their tokenizer is unknown)."""
    if endpoint is not None and endpoint.kind in (EndpointKind.TRANSFORMERS, EndpointKind.VLLM):
        try:
            from training.models import MODEL_LOAD_LOCK
            from webapp.endpoints.services import endpoint_model_resolve

            with MODEL_LOAD_LOCK:  # transformers imports lazily: not beside a model load in a worker thread
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(endpoint_model_resolve(endpoint=endpoint))
        except Exception:  # noqa: BLE001 - an estimate falls back to the rule of thumb, never fails
            pass
        else:
            def count(messages: list[dict]) -> int:
                # transformers 5 returns a BatchEncoding here unless told otherwise: its len() is its key count.
                ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=False)
                return len(ids)

            return count, "the endpoint's tokenizer"
    return (lambda messages: math.ceil(sum(len(str(m.get("content", ""))) for m in messages) / 4)), "characters / 4"


def _sample_groups(task: Task, n: int) -> tuple[list[str], int, int]:
    """Up to n group keys spread evenly over the task's groups (oldest to newest); also rollout and group counts."""
    counts = list(Rollout.objects.filter(task=task, error="").values("group_key").annotate(n=Count("id"))
                  .order_by("group_key"))
    total_rollouts = sum(c["n"] for c in counts)
    if len(counts) <= n:
        return [c["group_key"] for c in counts], total_rollouts, len(counts)
    step = len(counts) / n
    return [counts[int(i * step)]["group_key"] for i in range(n)], total_rollouts, len(counts)


def _calls_per(spec: RubricSpec) -> int:
    return len(judge_batches(spec))


def _prompt_tokens(spec: RubricSpec, groups: dict[str, list[EngineRollout]], count) -> list[int]:
    """Prompt tokens of every judge call the sample would make, rendered exactly as the judge job renders them."""
    sizes = []
    for batch in judge_batches(spec):
        for members in groups.values():
            try:
                if spec.judge.group_relative and len(members) > 1:
                    sizes.append(count(build_group_prompt(batch, members).messages))
                else:
                    sizes.extend(count(build_judge_prompt(batch, r).messages) for r in members)
            except Exception:  # noqa: BLE001,S112 - a prompt that cannot render is reported by the real job
                continue
    return sizes


def rubric_dry_run_execute(*, job_id: int) -> None:
    from webapp.judging.judges import judge_for_endpoint
    from webapp.judging.services import engine_rollout

    job = tool_job_claim(job_id=job_id, kind=RubricToolJob.Kind.DRY_RUN)
    if job is None:
        return
    if job.task is None or job.rubric_version is None:
        tool_job_fail(job_id=job.pk, error="The task or the rubric version was deleted.")
        return
    spec = rubric_spec_validate(job.spec)
    if spec.judge_criteria and job.endpoint is None:
        tool_job_fail(job_id=job.pk, error="The judge endpoint was deleted; choose another and run again.")
        return
    sample_keys, total_rollouts, total_groups = _sample_groups(job.task, int(job.params.get("groups", 8)))
    rollouts = list(Rollout.objects.filter(task=job.task, error="", group_key__in=sample_keys)
                    .select_related("example").order_by("group_key", "sample_index", "pk"))
    by_group: dict[str, list[Rollout]] = {}
    for rollout in rollouts:
        members = by_group.setdefault(rollout.group_key, [])
        if len(members) < MAX_ROLLOUTS_PER_GROUP:
            members.append(rollout)
    sample = [r for members in by_group.values() for r in members]

    stored = dict(RolloutScore.objects.filter(rubric_version=job.rubric_version, rollout__in=sample,
                                              total__isnull=False)
                  .order_by("rollout_id", "pk").values_list("rollout_id", "total"))
    to_score = [r for r in sample if r.pk not in stored]
    # Through the judge cache: the real job then reuses every verdict the dry run paid for.
    judge = judge_for_endpoint(job.endpoint) if spec.judge_criteria and to_score else None
    engine = RubricEngine(spec, judge=judge, python_allowlist=settings.RUBRICON_PYTHON_REWARD_ALLOWLIST)
    scores = async_to_sync(engine.ascore_many)([engine_rollout(r) for r in to_score]) if to_score else []
    totals: dict[int, float | None] = {**stored, **{r.pk: s.total for r, s in zip(to_score, scores, strict=True)}}

    # Time per judge call: measured now when calls were made, else the stored latencies of this version's judge.
    judge_keys = {c.key for c in spec.judge_criteria}
    batches = [[c.key for c in batch] for batch in judge_batches(spec)]
    latencies, completion_tokens, failed_calls = [], [], 0
    for score in scores:
        for keys in batches:
            result = score.criteria[keys[0]]
            if result.error and result.score is None and not result.raw_response:
                failed_calls += 1
            elif not result.cached:
                latencies.append(result.latency_ms)
                completion_tokens.append(sum(score.criteria[k].completion_tokens for k in keys))
    latency_source = f"measured on {len(latencies)} judge calls now" if latencies else ""
    if not latencies and judge_keys:
        stored_latencies = list(CriterionScore.objects.filter(
            rubric_version=job.rubric_version, criterion_key__in=[b[0] for b in batches], cached=False,
            latency_ms__isnull=False, rollout__task=job.task).order_by("-pk").values_list("latency_ms", flat=True)[:200])
        latencies = [float(x) for x in stored_latencies]
        latency_source = f"from {len(latencies)} stored judge scores" if latencies else "no judge call measured"

    count, token_source = _token_counter(job.endpoint) if judge_keys else (None, "")
    groups_engine = {key: [engine_rollout(r) for r in members] for key, members in by_group.items()}
    prompt_sizes = _prompt_tokens(spec, groups_engine, count) if judge_keys else []

    per_rollout_calls = _calls_per(spec)
    if spec.judge.group_relative:
        calls = total_groups * per_rollout_calls
    else:
        calls = total_rollouts * per_rollout_calls
    mean_prompt = statistics.fmean(prompt_sizes) if prompt_sizes else 0.0
    mean_completion = statistics.fmean(completion_tokens) if completion_tokens else 0.0
    mean_latency = statistics.fmean(latencies) if latencies else None
    concurrency = job.endpoint.max_concurrency if job.endpoint and job.endpoint.kind == EndpointKind.OPENAI else 1
    seconds = calls * mean_latency / 1000 / concurrency if mean_latency is not None else None

    group_rows, zero = [], 0
    for key, members in by_group.items():
        values = [totals.get(r.pk) for r in members]
        known = [v for v in values if v is not None]
        comparable = len(known) >= 2
        flat = comparable and max(known) - min(known) <= ZERO_VARIANCE_EPS
        zero += int(flat)
        example = members[0].example
        group_rows.append({
            "group_key": key, "example": example.external_id if example else "", "n": len(members),
            "totals": values, "zero_variance": flat, "comparable": comparable,
            "std": statistics.pstdev(known) if comparable else None,
        })
    comparable_groups = sum(1 for g in group_rows if g["comparable"])
    tool_job_finish(job=job, result={
        "rollouts": total_rollouts, "groups": total_groups, "sample_groups": len(by_group),
        "sample_rollouts": len(sample), "stored_totals": len(stored), "scored_now": len(to_score),
        "calls": calls, "calls_per_rollout": per_rollout_calls, "group_relative": spec.judge.group_relative,
        "prompt_tokens_per_call": round(mean_prompt, 1), "completion_tokens_per_call": round(mean_completion, 1),
        "prompt_tokens": round(calls * mean_prompt), "completion_tokens": round(calls * mean_completion),
        "token_source": token_source, "latency_ms_per_call": mean_latency, "latency_source": latency_source,
        "concurrency": concurrency, "seconds": seconds, "failed_calls": failed_calls,
        "zero_variance_groups": zero, "comparable_groups": comparable_groups,
        "zero_variance_share": (zero / comparable_groups) if comparable_groups else None,
        "group_rows": group_rows,
    })
