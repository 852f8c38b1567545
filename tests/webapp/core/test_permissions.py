"""Pages × roles: members see their project, others get 404, anonymous users go to the login page,
and no page ever shows another project's data or answers 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import (
    ExampleFactory,
    ProjectFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
)
from webapp.core.models import Membership, Role

ROLES = [Role.OWNER, Role.EDITOR, Role.ANNOTATOR, Role.VIEWER]


@pytest.fixture
def world(db):
    """Two projects with one of everything; the secret project's names must never leak."""
    mine, theirs = ProjectFactory(name="Mine"), ProjectFactory(name="Theirs")
    objects = {}
    for project, tag in ((mine, "mine"), (theirs, "secret")):
        task = TaskFactory(project=project, name=f"{tag}-task")
        ExampleFactory(task=task, prompt=f"{tag}-prompt")
        rubric = RubricFactory(project=project, name=f"{tag}-rubric", task=task)
        RubricVersionFactory(rubric=rubric, number=1)
        rollout = RolloutFactory(project=project, task=task, completion=f"{tag}-completion")
        objects[tag] = {"project": project, "task": task, "rubric": rubric, "rollout": rollout}
    return objects


def page_urls(objs) -> dict[str, str]:
    p = objs["project"].pk
    return {
        "dashboard": reverse("core:dashboard", args=[p]),
        "members": reverse("core:members", args=[p]),
        "tasks": reverse("tasks:list", args=[p]),
        "task": reverse("tasks:detail", args=[p, objs["task"].pk]),
        "rubrics": reverse("rubrics:list", args=[p]),
        "rubric": reverse("rubrics:detail", args=[p, objs["rubric"].pk]),
        "endpoints": reverse("endpoints:list", args=[p]),
        "rollouts": reverse("rollouts:list", args=[p]),
        "rollout": reverse("rollouts:detail", args=[p, objs["rollout"].pk]),
        "review": reverse("reviews:list", args=[p]),
        "training": reverse("runs:list", args=[p]),
        "exports": reverse("exports:list", args=[p]),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_every_role_reads_every_page_of_its_project_and_nothing_else(client, world, make_member, role):
    user, _ = make_member(role, project=world["mine"]["project"])
    client.force_login(user)
    for name, url in page_urls(world["mine"]).items():
        response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        assert b"secret-" not in response.content, f"{name} leaks another project's data"
    for name, url in page_urls(world["secret"]).items():
        response = client.get(url)
        assert response.status_code == 404, (name, response.status_code)


@pytest.mark.django_db
def test_objects_of_another_project_are_404_under_my_project(client, world, make_member):
    user, _ = make_member(Role.OWNER, project=world["mine"]["project"])
    client.force_login(user)
    mine, secret = world["mine"]["project"].pk, world["secret"]
    for url in (
        reverse("tasks:detail", args=[mine, secret["task"].pk]),
        reverse("rubrics:detail", args=[mine, secret["rubric"].pk]),
        reverse("rollouts:detail", args=[mine, secret["rollout"].pk]),
    ):
        assert client.get(url).status_code == 404, url


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(client, world):
    for url in [*page_urls(world["mine"]).values(), reverse("core:project_list")]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert client.get(reverse("login")).status_code == 200
    assert client.get(reverse("healthz")).status_code == 200


@pytest.mark.django_db
def test_api_requires_authentication_and_lists_only_my_projects(client, world, make_member):
    assert client.get("/api/v1/projects/").status_code == 403
    assert client.get("/api/schema/").status_code == 403
    user, _ = make_member(Role.VIEWER, project=world["mine"]["project"])
    client.force_login(user)
    body = client.get("/api/v1/projects/").json()
    assert [p["name"] for p in body["results"]] == ["Mine"]
    assert body["results"][0]["role"] == "viewer"
    assert client.get("/api/schema/").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "allowed"), [(Role.OWNER, True), (Role.EDITOR, False), (Role.ANNOTATOR, False), (Role.VIEWER, False)])
def test_only_owners_manage_members(client, world, make_member, role, allowed):
    project = world["mine"]["project"]
    user, _ = make_member(role, project=project)
    newcomer, _ = make_member(Role.VIEWER)
    client.force_login(user)
    response = client.post(
        reverse("core:member_add", args=[project.pk]), {"username": newcomer.username, "role": Role.EDITOR}
    )
    assert response.status_code == (302 if allowed else 403)
    assert Membership.objects.filter(project=project, user=newcomer).exists() is allowed
    response = client.post(reverse("core:member_remove", args=[project.pk, user.pk]))
    assert response.status_code in ((302, 400) if allowed else (403,))


@pytest.mark.django_db
def test_non_member_cannot_manage_members(client, world, make_member):
    outsider, _ = make_member(Role.OWNER)  # owner of some other project
    client.force_login(outsider)
    project = world["mine"]["project"]
    response = client.post(reverse("core:member_add", args=[project.pk]), {"username": outsider.username, "role": "owner"})
    assert response.status_code == 404
    assert not Membership.objects.filter(project=project, user=outsider).exists()


@pytest.mark.django_db
def test_post_without_csrf_token_is_refused(world, make_member):
    from django.test import Client

    user, project = make_member(Role.OWNER, project=world["mine"]["project"])
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("core:member_add", args=[project.pk]), {"username": user.username, "role": "viewer"})
    assert response.status_code == 403
