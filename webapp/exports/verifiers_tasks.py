"""Tasks backed by a verifiers 0.4 environment: an installed taskset plugin (e.g. `textarena` with Wordle-v0, or
the offline `rubricon_wordle`) played through a harness with verifiers' own episode loop.

`verifiers_task_create` makes the task and one example per taskset task (its data kept in `info.verifiers`);
a generation job on the task runs the episodes in the worker (`verifiers_rollouts`) against the job's endpoint over
HTTP: an OpenAI-compatible endpoint as it is; a local engine endpoint (vLLM or transformers, e.g. the bundled model)
through vLLM's own OpenAI-compatible server, which the worker starts for the job (webapp.rollouts.engines.served_model).
Episodes come back as rollouts with their message trajectories; the environment's rewards are stored as external
scores (`metadata.external_scores.verifiers`, as a verifiers run import stores them), never as our rubric total.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from django.conf import settings
from django.db import transaction

from training.generation import verifiers_env
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.endpoints.models import EndpointKind
from webapp.endpoints.services import endpoint_outbound
from webapp.exports import verifiers_runs as vf_runs
from webapp.rollouts.engines import served_model, served_models_close
from webapp.rollouts.models import GenerationJob, Rollout, RolloutSource
from webapp.tasks import services as task_services
from webapp.tasks.models import Example, Task, TaskKind

ENVIRONMENT = "verifiers"
MAX_TASKS = 1000
NO_KEY_VAR = "RUBRICON_VERIFIERS_NO_KEY"


@transaction.atomic
def verifiers_task_create(*, project: Project, name: str, taskset: dict[str, Any], count: int,
                          harness: dict[str, Any] | None = None, max_turns: int | None = None,
                          created_by: Any = None) -> Task:
    """A task backed by `taskset`, with its first `count` tasks as examples."""
    if not 1 <= count <= MAX_TASKS:
        raise ApplicationError(f"count must be 1..{MAX_TASKS}.", field="count")
    config: dict[str, Any] = {"taskset": dict(taskset), "harness": dict(harness or {"id": verifiers_env.DEFAULT_HARNESS})}
    if max_turns is not None:
        config["max_turns"] = max_turns
    task_services.verifiers_config_check(config)  # the operator's plugin list, before any plugin code runs
    try:
        tasks = verifiers_env.taskset_tasks(config["taskset"], count)
    except verifiers_env.VerifiersUnavailable as error:
        raise ApplicationError(str(error), status=503) from error
    except (ImportError, ValueError, TypeError) as error:  # unknown plugin, bad taskset options
        raise ApplicationError(f"verifiers could not load the taskset: {error}", field="environment_config") from error
    task = task_services.task_create(
        project=project, name=name, kind=TaskKind.ENVIRONMENT, environment=ENVIRONMENT, environment_config=config,
        system_prompt=str(tasks[0].get("system_prompt") or "") if tasks else "", created_by=created_by,
        instructions=f"Backed by the verifiers taskset {config['taskset']['id']!r} "
                     f"({', '.join(f'{k}={v}' for k, v in config['taskset'].items() if k != 'id') or 'defaults'}); "
                     "episodes run with verifiers' own loop, rewards come from the environment.",
    )
    task_services.examples_add(task=task, examples=[
        task_services.ExampleData(
            external_id=str(data.get("name") or f"task-{index}")[:200],
            prompt=data["prompt"] if isinstance(data.get("prompt"), str) else "",
            messages=data["prompt"] if isinstance(data.get("prompt"), list) else None,
            answer=str(data.get("answer") or ""), info={"verifiers": {"idx": index, "data": data}})
        for index, data in enumerate(tasks)])
    return task


def _key_var(endpoint: Any) -> str:
    if endpoint is not None and endpoint.api_key_env:
        return str(endpoint.api_key_env)
    os.environ.setdefault(NO_KEY_VAR, "none")  # verifiers reads a key from a variable; a keyless server ignores it
    return NO_KEY_VAR


def verifiers_rollouts(job: GenerationJob, examples: list[Example]) -> list[Rollout]:
    """Run the episodes of `examples` (samples_per_example each) and return their unsaved Rollout rows."""
    task = job.task
    config = dict(task.environment_config or {})
    task_services.verifiers_config_check(config)  # again: the operator's list may have changed
    endpoint = job.endpoint
    if endpoint is None:
        raise ApplicationError("The endpoint of this job was deleted; start a new job with another.", field="endpoint")
    params = dict(job.params or {})
    sampling = {k: params[k] for k in ("temperature", "top_p", "max_tokens") if params.get(k) is not None}
    by_index = {int((e.info or {}).get("verifiers", {}).get("idx", -1)): e for e in examples}
    if -1 in by_index:
        raise ApplicationError(f"Example {by_index[-1].external_id!r} was not made from the taskset (no "
                               "info.verifiers.idx).")
    run = functools.partial(
        verifiers_env.VerifiersRun, taskset=config["taskset"],
        harness=config.get("harness") or {"id": verifiers_env.DEFAULT_HARNESS}, tasks=sorted(by_index),
        rollouts=job.samples_per_example, sampling=sampling, max_turns=config.get("max_turns"),
        max_concurrent=max(1, endpoint.max_concurrency or 1),
        episode_timeout_s=settings.RUBRICON_VERIFIERS_EPISODE_TIMEOUT_S or None,
    )
    if endpoint.kind == EndpointKind.OPENAI:
        target = endpoint_outbound(endpoint)
        records = verifiers_env.run_episodes(run(base_url=target.base_url, model=job.model_name or endpoint.model,
                                                 api_key_var=_key_var(endpoint)))
    else:  # a local engine: its model served over HTTP by this worker, for this job
        with served_model(endpoint, model_override=job.model_name or None) as server:
            records = verifiers_env.run_episodes(run(base_url=server.base_url, model=server.model_name,
                                                     api_key_var=_key_var(None)))
    rows: list[Rollout] = []
    counters: dict[int, int] = {}
    for record in records:
        index = int(record["task"]["data"]["idx"])
        example = by_index[index]
        for found in vf_runs.read_episode(record, {}):
            sample = counters.get(example.pk, 0)
            counters[example.pk] = sample + 1
            rows.append(Rollout(
                project_id=job.project_id, task_id=job.task_id, example=example, job=job,
                source=RolloutSource.GENERATION, model_name=job.model_name or found.model,
                group_key=f"j{job.pk}-e{example.pk}", sample_index=sample, prompt_messages=found.prompt,
                messages=[*found.prompt, *found.completion],
                completion=vf_runs.last_assistant_text(found.completion), prompt_tokens=found.prompt_tokens,
                completion_tokens=found.completion_tokens, finish_reason=found.finish_reason[:32],
                latency_ms=found.latency_ms, error=found.error,
                metadata={"info": found.info, "verifiers": {"layout": vf_runs.V04, "metrics": found.metrics,
                                                            "taskset": config["taskset"], **found.extra},
                          "external_scores": {"verifiers": {"reward": found.reward, "rewards": found.rewards,
                                                            "metrics": found.metrics}}},
            ))
    return rows


def verifiers_chunk_run(*, job_id: int, index: int) -> int:
    """One chunk of a generation job on a verifiers-backed task (the worker calls this instead of
    `generation_chunk_run`): same leases, same idempotent write of the chunk's rows with its done flag."""
    from webapp.core.jobs import job_chunk_lease, job_finish_if_complete
    from webapp.core.models import JobChunk, JobStatus
    from webapp.rollouts.services import generation_rows_write

    job = GenerationJob.objects.select_related("task", "endpoint").get(pk=job_id)
    if job.status != JobStatus.RUNNING:
        return 0
    served = job.endpoint is not None and job.endpoint.kind != EndpointKind.OPENAI
    try:
        with job_chunk_lease(kind=JobChunk.Kind.GENERATION, job_id=job.pk, index=index) as lease:
            if lease is None:
                return 0
            if job.endpoint is None:
                raise ApplicationError("The job's endpoint was deleted.")
            examples = {e.pk: e for e in Example.objects.filter(pk__in=lease.item_ids)}
            rows = verifiers_rollouts(job, [examples[i] for i in lease.item_ids if i in examples])
            written = generation_rows_write(job, lease, rows)
        job_finish_if_complete(model=GenerationJob, kind=JobChunk.Kind.GENERATION, job_id=job.pk)
    except BaseException:
        if served:  # the job fails (or the chunk is sent again): the model server is not kept waiting for it
            served_models_close()
        raise
    if served and GenerationJob.objects.filter(pk=job.pk, status__in=JobStatus.finished()).exists():
        served_models_close()  # the job's last chunk here (or it was cancelled): its model server goes with it
    return written
