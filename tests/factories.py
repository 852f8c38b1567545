"""factory_boy factories for the domain models (tests build data through these or through services)."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from webapp.core.models import Membership, Project, Role
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.tasks.models import Example, Task

SIMPLE_SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
         "mode": "numeric", "tolerance": 0.0},
    ]
}


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    slug = factory.Sequence(lambda n: f"project-{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.VIEWER


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Task {n}")
    system_prompt = "Answer inside <answer></answer> tags."


class ExampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Example

    task = factory.SubFactory(TaskFactory)
    external_id = factory.Sequence(lambda n: f"ex-{n}")
    prompt = factory.Sequence(lambda n: f"What is {n} + 1?")
    answer = factory.Sequence(lambda n: str(n + 1))


class RubricFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rubric

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Rubric {n}")


class RubricVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RubricVersion

    rubric = factory.SubFactory(RubricFactory)
    number = factory.Sequence(lambda n: n + 1)
    spec = factory.LazyFunction(lambda: dict(SIMPLE_SPEC))


class EndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelEndpoint

    project = factory.SubFactory(ProjectFactory)
    name = factory.Sequence(lambda n: f"Endpoint {n}")
    kind = EndpointKind.OPENAI
    base_url = "http://127.0.0.1:9/v1"
    model = "judge-model"


class GenerationJobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GenerationJob

    project = factory.SubFactory(ProjectFactory)
    task = factory.SubFactory(TaskFactory, project=factory.SelfAttribute("..project"))
    model_name = "bundled"


class RolloutFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Rollout

    project = factory.SubFactory(ProjectFactory)
    task = factory.SubFactory(TaskFactory, project=factory.SelfAttribute("..project"))
    example = factory.SubFactory(ExampleFactory, task=factory.SelfAttribute("..task"))
    group_key = factory.Sequence(lambda n: f"g{n}")
    completion = "<answer>2</answer>"
    messages = factory.LazyAttribute(lambda o: [{"role": "user", "content": "q"}, {"role": "assistant", "content": o.completion}])
