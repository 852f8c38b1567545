"""The REST API: every resource × every role, never another project's data, never a 500; constant query counts;
optimistic locking on labels; token auth; schema and local docs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.factories import ProjectFactory, UserFactory
from tests.webapp.api.builders import ALSO_LISTED, RESOURCES, SPEC, one_of_everything
from webapp.core.models import Membership, Role
from webapp.reviews.models import HumanLabel

MEMBER_ROLES = [Role.OWNER, Role.EDITOR, Role.ANNOTATOR, Role.VIEWER]
ALL_ROLES = [*MEMBER_ROLES, "non-member", "anonymous"]


@pytest.fixture
def world(db):
    mine, theirs = ProjectFactory(name="Mine"), ProjectFactory(name="Theirs")
    return {"mine": one_of_everything(mine, "mine"), "secret": one_of_everything(theirs, "secret")}


def client_for(role: str, project) -> tuple[APIClient, object | None]:
    client = APIClient()
    if role == "anonymous":
        return client, None
    user = UserFactory()
    if role != "non-member":
        Membership.objects.create(project=project, user=user, role=role)
    client.force_authenticate(user)
    return client, user


def base(objs) -> str:
    return f"/api/v1/projects/{objs['project'].pk}"


def create_payloads(objs, tag: str) -> dict[str, dict]:
    return {
        "tasks": {"name": f"new-task-{tag}"},
        "examples": {"task": objs["task"].pk, "external_id": f"new-{tag}", "prompt": "p"},
        "rubrics": {"name": f"new-rubric-{tag}", "spec": SPEC},
        "rubric-versions": {"rubric": objs["rubric"].pk, "spec": SPEC, "note": "v2"},
        "endpoints": {"name": f"new-ep-{tag}", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                      "api_key_env": "OPENAI_API_KEY"},
        "exports": {"kind": "rollouts", "format": "jsonl", "filters": {"task": objs["task"].pk}},
        "judge-jobs": {"rubric_version": objs["version"].pk, "endpoint": objs["endpoint"].pk},
        "labels": {"rollout": objs["rollout"].pk, "rubric_version": objs["version"].pk, "criterion_key": "polite",
                   "value": 0.5},
        "generation-jobs": {"task": objs["task"].pk, "endpoint": objs["endpoint"].pk, "samples_per_example": 2,
                            "params": {"temperature": 0.7, "max_tokens": 16, "seed": 1}},
        "review-queues": {"name": f"new-queue-{tag}", "rubric_version": objs["version"].pk, "size": 5,
                          "selection": {"task": objs["task"].pk}},
        "training-runs": {"task": objs["task"].pk, "rubric_version": objs["version"].pk, "preset": "cpu-smoke",
                          "judge_endpoint": objs["endpoint"].pk, "options": {"max_steps": 1},
                          "calibration_override": True, "calibration_note": "smoke test"},
    }


@pytest.mark.django_db
@pytest.mark.parametrize("role", ALL_ROLES)
def test_reads_by_role_never_leak_and_never_fail(world, role):
    mine, secret = world["mine"], world["secret"]
    client, _ = client_for(role, mine["project"])
    member = role in MEMBER_ROLES
    for resource, key in RESOURCES.items():
        listing = client.get(f"{base(mine)}/{resource}/")
        detail = client.get(f"{base(mine)}/{resource}/{mine[key].pk}/")
        if member:
            assert listing.status_code == 200, (resource, listing.status_code, listing.content[:300])
            assert detail.status_code == 200, (resource, detail.status_code)
            listed = sorted([mine[key].pk, *(mine[k].pk for k in ALSO_LISTED.get(resource, ()))], reverse=True)
            assert [row["id"] for row in listing.json()["results"]] == listed, resource
            assert b"secret" not in listing.content + detail.content, f"{resource} leaks another project's data"
        else:
            expected = 403 if role == "anonymous" else 404
            assert (listing.status_code, detail.status_code) == (expected, expected), resource
        # Another project's object through my project's URL, and another project's URL: both hidden.
        assert client.get(f"{base(mine)}/{resource}/{secret[key].pk}/").status_code in (403, 404), resource
        assert client.get(f"{base(secret)}/{resource}/").status_code in (403, 404), resource
        assert client.get(f"{base(secret)}/{resource}/{secret[key].pk}/").status_code in (403, 404), resource


EXPECTED_WRITE = {
    # resource group -> roles allowed to write it
    "edit": {Role.OWNER, Role.EDITOR},
    "label": {Role.OWNER, Role.EDITOR, Role.ANNOTATOR},
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", ALL_ROLES)
def test_writes_by_role(world, role):
    mine = world["mine"]
    client, _ = client_for(role, mine["project"])
    for resource, payload in create_payloads(mine, role).items():
        allowed = EXPECTED_WRITE["label" if resource == "labels" else "edit"]
        response = client.post(f"{base(mine)}/{resource}/", payload, format="json")
        if role in allowed:
            assert response.status_code == 201, (resource, response.status_code, response.content[:400])
        elif role in MEMBER_ROLES:
            assert response.status_code == 403, (resource, response.status_code)
        else:
            assert response.status_code == (403 if role == "anonymous" else 404), (resource, response.status_code)
    # Read-only resources refuse writes without a 500, whatever the role.
    # Edits carry the row_version that was read.
    for resource, key, change in (("tasks", "task", {"instructions": "new"}), ("examples", "example", {"answer": "9"}),
                                  ("endpoints", "endpoint", {"max_concurrency": 3})):
        response = client.patch(f"{base(mine)}/{resource}/{mine[key].pk}/", {"row_version": 1, **change},
                                format="json")
        if role in EXPECTED_WRITE["edit"]:
            assert response.status_code == 200, (resource, response.status_code, response.content[:300])
        else:
            assert response.status_code in (403, 404), (resource, response.status_code)
    for resource in ("rollouts", "criterion-scores", "rollout-scores", "training-metrics", "checkpoints"):
        response = client.post(f"{base(mine)}/{resource}/", {}, format="json")
        assert response.status_code in (403, 404, 405), (resource, response.status_code)
    # Versions are immutable.
    response = client.patch(f"{base(mine)}/rubric-versions/{mine['version'].pk}/", {"note": "x"}, format="json")
    assert response.status_code in (403, 404, 405)
    mine["version"].refresh_from_db()
    assert mine["version"].note == ""


@pytest.mark.django_db
def test_writes_cannot_reference_another_projects_rows(world):
    mine, secret = world["mine"], world["secret"]
    client, _ = client_for(Role.OWNER, mine["project"])
    cases = {
        "examples": {"task": secret["task"].pk, "external_id": "x"},
        "rubric-versions": {"rubric": secret["rubric"].pk, "spec": SPEC},
        "rubrics": {"name": "r", "spec": SPEC, "task": secret["task"].pk},
        "labels": {"rollout": secret["rollout"].pk, "rubric_version": mine["version"].pk, "criterion_key": "correct"},
        "exports": {"kind": "rollouts", "format": "jsonl", "filters": {"task": secret["task"].pk}},
    }
    for resource, payload in cases.items():
        response = client.post(f"{base(mine)}/{resource}/", payload, format="json")
        assert response.status_code == 400, (resource, response.status_code, response.content)
    assert not secret["task"].examples.filter(external_id="x").exists()


@pytest.mark.django_db
def test_endpoints_never_expose_keys(world, monkeypatch):
    monkeypatch.setenv("VENDOR_API_KEY", "sk-live-do-not-show")
    client, _ = client_for(Role.OWNER, world["mine"]["project"])
    body = client.get(f"{base(world['mine'])}/endpoints/").json()["results"][0]
    assert body["api_key_env"] == "VENDOR_API_KEY"
    assert "sk-live" not in str(body) and "api_key" not in body


@pytest.mark.django_db
def test_list_endpoints_have_constant_query_counts(db):
    project = ProjectFactory()
    client, _ = client_for(Role.VIEWER, project)

    def counts() -> dict[str, int]:
        out = {}
        for resource in RESOURCES:
            with CaptureQueriesContext(connection) as queries:
                response = client.get(f"/api/v1/projects/{project.pk}/{resource}/")
            assert response.status_code == 200
            out[resource] = len(queries)
        return out

    one_of_everything(project, "a")
    small = counts()
    one_of_everything(project, "b")
    one_of_everything(project, "c")
    large = counts()
    assert small == large
    assert max(large.values()) <= 3  # membership check, count-free cursor page, at most one join-free extra


@pytest.mark.django_db
def test_filters_and_cursor_pagination(world):
    mine = world["mine"]
    project = mine["project"]
    more = one_of_everything(project, "more")
    client, _ = client_for(Role.VIEWER, project)
    url = f"{base(mine)}/rollouts/"
    assert [r["id"] for r in client.get(url, {"task": more["task"].pk}).json()["results"]] == [more["rollout"].pk]
    assert [r["id"] for r in client.get(url, {"job": mine["job"].pk}).json()["results"]] == [mine["rollout"].pk]
    assert client.get(url, {"score_min": 0.5, "rubric_version": mine["version"].pk}).json()["results"][0]["id"] == (
        mine["rollout"].pk)
    assert client.get(url, {"score_min": 1.5}).json()["results"] == []
    assert client.get(url, {"task": "abc"}).status_code == 400
    assert client.get(url, {"score_min": "nan"}).status_code == 400
    first = client.get(url, {"page_size": 1}).json()
    assert len(first["results"]) == 1 and first["next"]
    second = client.get(first["next"]).json()
    assert {first["results"][0]["id"], second["results"][0]["id"]} == {mine["rollout"].pk, more["rollout"].pk}
    scores = client.get(f"{base(mine)}/criterion-scores/", {"rubric_version": more["version"].pk}).json()["results"]
    assert [s["id"] for s in scores] == [more["score"].pk]


@pytest.mark.django_db
def test_label_update_with_stale_row_version_is_409_with_current_value(world):
    mine = world["mine"]
    client, user = client_for(Role.ANNOTATOR, mine["project"])
    url = f"{base(mine)}/labels/"
    created = client.post(url, {"rollout": mine["rollout"].pk, "rubric_version": mine["version"].pk,
                                "criterion_key": "polite", "value": 0.0}, format="json").json()
    assert created["row_version"] == 1 and created["annotator"] == user.username
    ok = client.patch(f"{url}{created['id']}/", {"row_version": 1, "value": 1.0, "comment": "fine"}, format="json")
    assert ok.status_code == 200 and ok.json()["row_version"] == 2
    stale = client.patch(f"{url}{created['id']}/", {"row_version": 1, "value": 0.0}, format="json")
    assert stale.status_code == 409
    assert stale.json()["current"]["value"] == 1.0 and stale.json()["current"]["row_version"] == 2
    assert HumanLabel.objects.get(pk=created["id"]).value == 1.0
    # A second label on the same criterion is a conflict too, carrying the existing one.
    again = client.post(url, {"rollout": mine["rollout"].pk, "rubric_version": mine["version"].pk,
                              "criterion_key": "polite", "value": 0.0}, format="json")
    assert again.status_code == 409 and again.json()["current"]["id"] == created["id"]
    # Someone else's label cannot be edited, and an unknown criterion or out-of-range value is a 400.
    other = client.patch(f"{url}{mine['label'].pk}/", {"row_version": 1, "value": 0.0}, format="json")
    assert other.status_code == 403
    bad = client.post(url, {"rollout": mine["rollout"].pk, "rubric_version": mine["version"].pk,
                            "criterion_key": "nope"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "criterion_key"
    assert client.post(url, {"rollout": mine["rollout"].pk, "rubric_version": mine["version"].pk,
                             "criterion_key": "polite", "value": 7}, format="json").status_code == 400


@pytest.mark.django_db
def test_stale_task_edit_is_409_with_current_values(world):
    mine = world["mine"]
    client, _ = client_for(Role.EDITOR, mine["project"])
    url = f"{base(mine)}/tasks/{mine['task'].pk}/"
    assert client.patch(url, {"row_version": 1, "instructions": "first"}, format="json").json()["row_version"] == 2
    stale = client.patch(url, {"row_version": 1, "instructions": "second"}, format="json")
    assert stale.status_code == 409 and stale.json()["current"]["instructions"] == "first"
    mine["task"].refresh_from_db()
    assert mine["task"].instructions == "first"
    assert client.patch(url, {"instructions": "no version"}, format="json").status_code == 400


@pytest.mark.django_db
def test_project_create_makes_the_caller_owner(db):
    user = UserFactory()
    client = APIClient()
    client.force_authenticate(user)
    response = client.post("/api/v1/projects/", {"name": "Fresh"}, format="json")
    assert response.status_code == 201 and response.json()["role"] == "owner"
    assert client.post("/api/v1/projects/", {"name": "  "}, format="json").status_code == 400


@pytest.mark.django_db
def test_token_authentication(world, settings):
    import io

    from django.core.management import call_command

    user = UserFactory()
    Membership.objects.create(project=world["mine"]["project"], user=user, role=Role.VIEWER)
    out = io.StringIO()
    call_command("api_token", user.username, stdout=out)
    key = out.getvalue().strip()
    client = APIClient()
    assert client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}").json()["results"][0]["name"] == "Mine"
    assert client.get("/api/v1/projects/", HTTP_AUTHORIZATION="Token wrong").status_code in (401, 403)
    # Rotating from the page revokes the old key.
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    page = browser.post("/api/token/", follow=True)
    assert page.status_code == 200
    assert client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code in (401, 403)


@pytest.mark.django_db
def test_schema_and_local_docs(client, world, settings):
    assert client.get("/api/docs/").status_code == 302  # to the login page
    user = UserFactory()
    client.force_login(user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for resource in RESOURCES:
        assert f"/api/v1/projects/{{project_id}}/{resource}/" in paths, resource
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    if "drf_spectacular_sidecar" not in settings.INSTALLED_APPS:
        pytest.fail("Add 'drf_spectacular_sidecar' to INSTALLED_APPS so its static files are served")
    from django.contrib.staticfiles import finders

    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
