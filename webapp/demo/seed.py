"""The demo project seeded by `manage.py seed_demo`: arithmetic with a correctness and a format check.

Deterministic, so every machine gets the same examples; idempotent, so running it twice changes nothing.
"""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model
from django.db import transaction

from webapp.core.models import Membership, Project, Role
from webapp.core.services import project_create
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.endpoints.services import endpoint_create
from webapp.rubrics.models import Rubric
from webapp.rubrics.services import rubric_create
from webapp.tasks.models import Split, Task
from webapp.tasks.services import ExampleData, examples_add, task_create

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
DEMO_PROJECT_SLUG = "demo-arithmetic"
DEMO_TASK_NAME = "Arithmetic"
DEMO_RUBRIC_NAME = "Arithmetic correctness"
DEMO_ENDPOINT_NAME = "Bundled SmolLM2-135M (transformers)"

SYSTEM_PROMPT = (
    "You are a careful calculator. Think briefly, then give only the final number inside "
    "<answer></answer> tags, for example <answer>42</answer>."
)
DEMO_RUBRIC_SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct final answer", "kind": "match", "weight": 1.0,
         "extract": "answer_tag", "mode": "numeric", "tolerance": 0.0},
        {"key": "format", "title": "Answer inside <answer> tags", "kind": "format", "weight": 0.25,
         "check": "answer_tag"},
    ]
}


def arithmetic_examples(n: int = 50, *, eval_share: float = 0.2, seed: int = 7) -> list[ExampleData]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        op = rng.choice(["+", "-", "*"])
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "*" else (rng.randint(10, 99), rng.randint(1, 99))
        result = a + b if op == "+" else a - b if op == "-" else a * b
        examples.append(
            ExampleData(
                external_id=f"arith-{i:03d}",
                prompt=f"What is {a} {op} {b}?",
                answer=str(result),
                split=Split.EVAL if i >= n * (1 - eval_share) else Split.TRAIN,
                info={"a": a, "b": b, "op": op},
            )
        )
    return examples


@transaction.atomic
def seed_demo() -> Project:
    User = get_user_model()
    user = User.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = User.objects.create_user(DEMO_USERNAME, password=DEMO_PASSWORD)

    project = Project.objects.filter(slug=DEMO_PROJECT_SLUG).first()
    if project is None:
        project = project_create(
            name="Demo: arithmetic", owner=user, slug=DEMO_PROJECT_SLUG,
            description="A small arithmetic task to try the whole loop with the bundled SmolLM2 model.",
        )
    Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.OWNER})

    task = Task.objects.filter(project=project, name=DEMO_TASK_NAME).first()
    if task is None:
        task = task_create(
            project=project, name=DEMO_TASK_NAME, created_by=user, system_prompt=SYSTEM_PROMPT,
            instructions="Compute the result of a small arithmetic expression.",
        )
        examples_add(task=task, examples=arithmetic_examples())

    if not Rubric.objects.filter(project=project, name=DEMO_RUBRIC_NAME).exists():
        rubric_create(
            project=project, name=DEMO_RUBRIC_NAME, spec=DEMO_RUBRIC_SPEC, author=user, task=task,
            description="Exact numeric match on the <answer> tag, plus a small reward for the format.",
        )

    if not ModelEndpoint.objects.filter(project=project, name=DEMO_ENDPOINT_NAME).exists():
        endpoint_create(
            project=project, name=DEMO_ENDPOINT_NAME, kind=EndpointKind.TRANSFORMERS, model="bundled",
            default_params={"temperature": 0.8, "max_tokens": 64}, max_concurrency=1,
        )
    return project
