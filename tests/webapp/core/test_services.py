from __future__ import annotations

import pytest

from tests.factories import UserFactory
from webapp.core import services
from webapp.core.errors import ApplicationError
from webapp.core.models import Membership, Project, Role
from webapp.demo.seed import DEMO_RUBRIC_SPEC, seed_demo
from webapp.rubrics.models import RubricVersion
from webapp.tasks.models import Example


@pytest.mark.django_db
def test_project_create_makes_creator_owner_and_unique_slug():
    user = UserFactory()
    a = services.project_create(name="My Evals", owner=user)
    b = services.project_create(name="My Evals", owner=user)
    assert a.slug == "my-evals" and b.slug == "my-evals-2"
    assert Membership.objects.get(project=a, user=user).role == Role.OWNER


@pytest.mark.django_db
def test_last_owner_cannot_be_demoted_or_removed():
    owner = UserFactory()
    project = services.project_create(name="P", owner=owner)
    with pytest.raises(ApplicationError, match="at least one owner"):
        services.membership_set(project=project, username=owner.username, role=Role.VIEWER)
    with pytest.raises(ApplicationError, match="at least one owner"):
        services.membership_remove(project=project, user_id=owner.pk)
    second = UserFactory()
    services.membership_set(project=project, username=second.username, role=Role.OWNER)
    services.membership_set(project=project, username=owner.username, role=Role.VIEWER)
    assert Membership.objects.get(project=project, user=owner).role == Role.VIEWER


@pytest.mark.django_db
def test_membership_set_rejects_unknown_user_and_role():
    project = services.project_create(name="P", owner=UserFactory())
    with pytest.raises(ApplicationError, match="No user named"):
        services.membership_set(project=project, username="ghost", role=Role.VIEWER)
    with pytest.raises(ApplicationError, match="Unknown role"):
        services.membership_set(project=project, username=UserFactory().username, role="admin")


@pytest.mark.django_db
def test_seed_demo_is_idempotent():
    first = seed_demo()
    second = seed_demo()
    assert first.pk == second.pk and Project.objects.count() == 1
    task = first.tasks.get()
    assert Example.objects.filter(task=task).count() == 50
    assert set(Example.objects.filter(task=task).values_list("split", flat=True)) == {"train", "eval"}
    version = RubricVersion.objects.get(rubric__project=first)
    assert version.number == 1 and version.spec == DEMO_RUBRIC_SPEC
    assert first.endpoints.get().model == "bundled"
    # The reference answers are right: a regression here would poison every demo reward.
    for ex in Example.objects.filter(task=task):
        a, op, b = ex.info["a"], ex.info["op"], ex.info["b"]
        assert str({"+": a + b, "-": a - b, "*": a * b}[op]) == ex.answer


@pytest.mark.django_db
def test_the_overview_counts_come_from_every_app(django_assert_num_queries):
    """core imports no app: each app registers its headline numbers (AppConfig.ready); the dashboard shows them all."""
    from tests.factories import RolloutFactory
    from webapp.core.selectors import project_counts

    rollout = RolloutFactory()
    project = rollout.project
    with django_assert_num_queries(11):
        counts = project_counts(project)
    assert counts == {"tasks": 1, "examples": 1, "rubrics": 0, "endpoints": 0, "rollouts": 1, "generation_jobs": 0,
                      "judge_jobs": 0, "labels": 0, "pairwise_labels": 0, "training_runs": 0, "exports": 0}
