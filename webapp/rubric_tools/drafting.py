"""AI-drafted rubrics: an LM proposes criteria and per-example checklists from a task; the user edits the draft and
accepts it, which is the only moment anything is saved (a new rubric, and the checklists on the examples).

Flow: rubric_draft_create (web) → workers.generation.draft_rubric (queue `rollout`, the LM call takes 10–60 s on a
CPU) → rubric_draft_execute → the draft page polls the job row → rubric_draft_accept.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.db.models import F

from training.rubrics.draft import DraftExample, draft_messages, parse_draft, skeleton_criteria
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Project
from webapp.endpoints.models import ModelEndpoint
from webapp.rubric_tools.jobs import tool_job_claim, tool_job_fail, tool_job_finish
from webapp.rubric_tools.preview import spec_from_json
from webapp.rubrics.models import Rubric, RubricToolJob
from webapp.rubrics.services import rubric_create, rubric_spec_validate
from webapp.tasks.models import Example, Task

DRAFT_MAX_EXAMPLES = 8
DRAFT_DEFAULT_MAX_TOKENS = 384
CHECKLIST_MAX_ITEMS = 20
DRAFT_REPETITION_PENALTY = 1.2


@transaction.atomic
def rubric_draft_create(
    *, project: Project, task: Task, endpoint: ModelEndpoint, examples: int = 3,
    max_tokens: int = DRAFT_DEFAULT_MAX_TOKENS, created_by=None, enqueue: bool = True,
) -> RubricToolJob:
    if task.project_id != project.pk:
        raise ApplicationError("That task belongs to another project.", field="task")
    if endpoint.project_id != project.pk:
        raise ApplicationError("That endpoint belongs to another project.", field="endpoint")
    if not 0 <= examples <= DRAFT_MAX_EXAMPLES:
        raise ApplicationError(f"Use between 0 and {DRAFT_MAX_EXAMPLES} examples.", field="examples")
    if not 32 <= max_tokens <= 4096:
        raise ApplicationError("Max tokens must be between 32 and 4096.", field="max_tokens")
    # Train examples first: eval examples stay unseen by whoever writes the rubric.
    chosen = list(task.examples.order_by("-split", "pk")[:examples]) if examples else []  # "train" > "eval"
    if not task.instructions.strip() and not chosen:
        raise ApplicationError("This task has no instructions and no examples: the model would have nothing to "
                               "go on. Add instructions or examples first.", field="task")
    job = RubricToolJob.objects.create(
        project=project, kind=RubricToolJob.Kind.DRAFT, task=task, endpoint=endpoint, created_by=created_by,
        params={"max_tokens": max_tokens, "examples": [
            {"pk": e.pk, "id": e.external_id, "prompt": e.prompt or _messages_text(e.messages), "reference": e.answer}
            for e in chosen]},
    )
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.generation.draft_rubric", job_id=job.pk)
    return job


def _messages_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    return "\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in messages if isinstance(m, dict))


def _draft_examples(job: RubricToolJob) -> list[DraftExample]:
    return [DraftExample(id=e["id"], prompt=e["prompt"], reference=e["reference"] or "")
            for e in job.params.get("examples", [])]


def rubric_draft_execute(*, job_id: int) -> None:
    """Worker side: one LM call, then a parse that always ends in a valid spec (or a failed job with the reason)."""
    from training.generation import SamplingParams
    from webapp.rollouts.engines import backend_config, backend_in_use

    job = tool_job_claim(job_id=job_id, kind=RubricToolJob.Kind.DRAFT)
    if job is None:
        return
    if job.endpoint is None or job.task is None:
        tool_job_fail(job_id=job.pk, error="The endpoint or the task was deleted; start a new draft.")
        return
    task, examples = job.task, _draft_examples(job)
    messages = draft_messages(instructions=task.instructions, examples=examples, system_prompt=task.system_prompt)
    # Greedy decoding keeps drafts reproducible; the penalty stops small models from looping on one phrase.
    params = SamplingParams(max_tokens=int(job.params.get("max_tokens", DRAFT_DEFAULT_MAX_TOKENS)), temperature=0.0,
                            repetition_penalty=DRAFT_REPETITION_PENALTY)
    with backend_in_use(backend_config(job.endpoint)) as backend:
        [[completion]] = backend.generate([messages], params)
    if completion.error:
        tool_job_fail(job_id=job.pk, error=f"The model call failed: {completion.error}. Check the endpoint with "
                                           "“Test connection”, then draft again.")
        return
    has_reference = any(e.reference for e in examples)
    proposal = parse_draft(completion.text, examples=examples, instructions=task.instructions,
                           has_reference=has_reference)
    try:
        rubric_spec_validate(proposal.spec)
    except ApplicationError as error:
        proposal.notes.append(f"The proposed criteria did not validate ({error.message}); replaced by a skeleton.")
        proposal.spec = {"criteria": skeleton_criteria(instructions=task.instructions, has_reference=has_reference)}
        proposal.source = "skeleton"
        rubric_spec_validate(proposal.spec)
    tool_job_finish(job=job, result={
        **proposal.to_dict(), "raw": completion.text, "latency_ms": completion.latency_ms,
        "finish_reason": completion.finish_reason, "completion_tokens": completion.completion_tokens,
    })


def checklist_lines(text: str) -> list[str]:
    """One checklist item per non-empty line; leading bullets are dropped."""
    items = []
    for line in (text or "").splitlines():
        item = line.strip().lstrip("-*•").strip()
        if item and item not in items:
            items.append(item[:500])
    if len(items) > CHECKLIST_MAX_ITEMS:
        raise ApplicationError(f"A checklist can have at most {CHECKLIST_MAX_ITEMS} items.", field="checklists")
    return items


@transaction.atomic
def rubric_draft_accept(
    *, job: RubricToolJob, name: str, spec_json: str, checklists: dict[int, str], author=None,
) -> Rubric:
    """Create the rubric from the (edited) draft and store the per-example checklists, all or nothing."""
    locked = RubricToolJob.objects.select_for_update().get(pk=job.pk)
    if locked.kind != RubricToolJob.Kind.DRAFT or locked.status != JobStatus.SUCCEEDED:
        raise ApplicationError("Only a finished draft can be accepted.")
    if locked.result.get("rubric_id"):
        raise ApplicationError("This draft was already accepted.", status=409)
    spec = spec_from_json(spec_json)
    allowed = {e["pk"] for e in locked.params.get("examples", [])}
    parsed_checklists = {pk: checklist_lines(text) for pk, text in checklists.items() if pk in allowed}
    endpoint_name = locked.endpoint.name if locked.endpoint else "an LM"
    rubric = rubric_create(project=locked.project, name=name, spec=spec, author=author, task=locked.task,
                           note=f"Drafted by {endpoint_name}"[:500])
    for example in Example.objects.select_for_update().filter(pk__in=parsed_checklists, task=locked.task):
        items = parsed_checklists[example.pk]
        if items != example.checklist:
            Example.objects.filter(pk=example.pk).update(checklist=items, row_version=F("row_version") + 1)
    locked.result = {**locked.result, "rubric_id": rubric.pk}
    locked.save(update_fields=["result"])
    return rubric


def draft_spec_text(job: RubricToolJob) -> str:
    return json.dumps(job.result.get("spec", {}), indent=2, ensure_ascii=False)
