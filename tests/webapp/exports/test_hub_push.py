"""Pushing an export to the Hugging Face Hub: huggingface_hub itself talks to a real local HTTP server that speaks the
Hub endpoints it uses (HF_ENDPOINT); what arrives is read back with `datasets` and the card with huggingface_hub.

Parquet goes the way the Hub sends it, through git LFS (preupload answers "lfs", then the LFS batch API, the upload to
storage in one part or several, verify, and a commit that names the object). With hf_xet installed (as it comes with
huggingface_hub here), huggingface_hub would upload LFS files over Xet storage instead, whose protocol this local Hub
does not speak: these tests turn Xet off with huggingface_hub's documented switch, HF_HUB_DISABLE_XET=1, so the
upload they check is the LFS one (which the Hub still accepts; an operator can set the same variable on workers)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, UserFactory
from tests.webapp.exports.conftest import build_scored_project
from tests.webapp.exports.hub_server import FakeHub
from webapp.core.errors import ApplicationError
from webapp.core.models import JobStatus, Role
from webapp.exports.hub import hub_push_create, hub_push_run
from webapp.exports.models import HubPush
from webapp.exports.services import export_create, export_write

TOKEN = "hf_test_token_123"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # Other test modules set HF_HUB_OFFLINE=1 for vLLM; this test talks to a (local) Hub on purpose.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # LFS, not Xet (module docstring); huggingface_hub reads the variable once, at import.
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    with FakeHub(tmp_path / "hub", token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def finished_export(scored, format: str, kind: str = "rollouts"):
    export = export_create(project=scored["project"], kind=kind, format=format,
                           filters={"rubric_version": scored["version"].pk, "task": scored["task"].pk}, enqueue=False)
    export = export_write(export_id=export.pk)
    assert export.status == JobStatus.SUCCEEDED, export.error
    return export


def load_pushed(root: Path, repo_id: str, data_file: str):
    """The pushed repo as a user loads it: the card's YAML `configs` says where the data is."""
    import datasets
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(root / repo_id / "README.md")
    config = card.data.to_dict()["configs"][0]
    assert config["data_files"][0]["path"] == data_file
    loader = {"parquet": "parquet", "jsonl": "json", "csv": "csv"}[data_file.rsplit(".", 1)[1]]
    data = datasets.load_dataset(loader, data_files=str(root / repo_id / data_file), split="train",
                                 cache_dir=str(root / "cache"))
    return card, data


@pytest.mark.django_db
@pytest.mark.parametrize(("format", "data_file"), [("parquet", "data/train.parquet"), ("jsonl", "data/train.jsonl"),
                                                  ("hf", "data/train.parquet")])
def test_push_uploads_data_and_card_that_datasets_reads(scored, hub, format, data_file):
    export = finished_export(scored, format)
    push = hub_push_create(export=export, repo_id="team/arith-rollouts", token_env="HF_TOKEN", private=True,
                           enqueue=False)
    push = hub_push_run(push_id=push.pk)
    assert push.status == JobStatus.SUCCEEDED, push.error
    assert push.url.startswith(hub.url) and push.commit_oid
    assert hub.repos["team/arith-rollouts"]["visibility"] == "private"
    assert sorted(push.files) == sorted([data_file, "README.md"])
    card, data = load_pushed(hub.root, "team/arith-rollouts", data_file)
    assert data.num_rows == export.done == 9
    # Parquet travels through git LFS as on the Hub; the text files in the commit itself.
    lfs = data_file.endswith(".parquet")
    assert hub.upload_modes == {data_file: "lfs" if lfs else "regular", "README.md": "regular"}
    assert hub.commits[-1]["lfs_files"] == ([data_file] if lfs else [])
    if lfs:
        content = (hub.root / "team/arith-rollouts" / data_file).read_bytes()
        assert hub.lfs_objects == {hashlib.sha256(content).hexdigest(): content}
        assert ("POST", "/datasets/team/arith-rollouts.git/info/lfs/objects/batch") in hub.requests
        assert any(method == "PUT" and path.startswith("/storage/") for method, path in hub.requests)
    assert sorted(data["rollout_id"]) == sorted(r.pk for r in scored["rollouts"])
    by_id = {row["rollout_id"]: row for row in data}
    assert by_id[scored["rollouts"][1].pk]["completion"] == scored["rollouts"][1].completion
    text = card.text
    assert "arith" in text and "arith-rubric v1" in text  # task and rubric version
    assert "rows: 9" in text and "rubric version: arith-rubric v1" in text  # counts and filters
    assert "| polite | judge-a |" in text  # agreement figures of the version's labelled criterion
    assert "rubricon" in card.data.to_dict()["tags"]


@pytest.mark.django_db
def test_a_large_parquet_file_goes_up_in_parts(scored, hub, tmp_path, monkeypatch):
    """Past the storage's part size the batch API answers "multipart": huggingface_hub sends each part to its own
    signed URL and completes the upload with the parts' ETags; the commit then names the assembled object."""
    export = finished_export(scored, "parquet")
    size = Path(export.file.path).stat().st_size
    with FakeHub(tmp_path / "parts", token=TOKEN, lfs_chunk_size=max(1024, size // 3)) as parts_hub:
        monkeypatch.setenv("HF_ENDPOINT", parts_hub.url)
        push = hub_push_run(push_id=hub_push_create(export=export, repo_id="team/parts", token_env="HF_TOKEN",
                                                    enqueue=False).pk)
        assert push.status == JobStatus.SUCCEEDED, push.error
        puts = [path for method, path in parts_hub.requests if method == "PUT"]
        assert len(puts) >= 3 and all("/part/" in path for path in puts)
        assert any(path.startswith("/lfs/team/parts/complete/") for _, path in parts_hub.requests)
        assert parts_hub.commits[-1]["lfs_files"] == ["data/train.parquet"]
        _, data = load_pushed(parts_hub.root, "team/parts", "data/train.parquet")
        assert sorted(data["rollout_id"]) == sorted(r.pk for r in scored["rollouts"])


@pytest.mark.django_db
def test_second_push_to_the_same_repo_commits_again(scored, hub):
    export = finished_export(scored, "parquet")
    for _ in range(2):
        push = hub_push_create(export=export, repo_id="team/again", token_env="HF_TOKEN", enqueue=False)
        assert hub_push_run(push_id=push.pk).status == JobStatus.SUCCEEDED
    assert len([c for c in hub.commits if c["repo_id"] == "team/again"]) == 2
    assert hub_push_run(push_id=push.pk) is None  # a redelivered message does nothing


@pytest.mark.django_db
def test_wrong_token_is_stored_on_the_push(scored, hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    push = hub_push_create(export=finished_export(scored, "jsonl"), repo_id="team/x", token_env="HF_TOKEN",
                           enqueue=False)
    push = hub_push_run(push_id=push.pk)
    assert push.status == JobStatus.FAILED
    assert "401" in push.error and "Invalid credentials" in push.error
    assert not (hub.root / "team/x").exists()


@pytest.mark.django_db
def test_unreachable_hub_and_missing_variable_are_stored(scored, hub, monkeypatch):
    export = finished_export(scored, "jsonl")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    push = hub_push_run(push_id=hub_push_create(export=export, repo_id="team/x", token_env="HF_TOKEN",
                                                enqueue=False).pk)
    assert push.status == JobStatus.FAILED and "Could not reach the Hub at http://127.0.0.1:9" in push.error
    monkeypatch.delenv("MY_HUB_TOKEN", raising=False)
    push = hub_push_run(push_id=hub_push_create(export=export, repo_id="team/x", token_env="MY_HUB_TOKEN",
                                                enqueue=False).pk)
    assert push.status == JobStatus.FAILED and "$MY_HUB_TOKEN is not set" in push.error


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["DATABASE_URL", "DJANGO_SECRET_KEY", "AWS_SESSION_TOKEN", "HOME", "lower_token"])
def test_token_variable_must_pass_the_operators_rules(scored, name):
    export = finished_export(scored, "jsonl")
    with pytest.raises(ApplicationError) as refused:
        hub_push_create(export=export, repo_id="team/x", token_env=name, enqueue=False)
    assert refused.value.field == "token_env"
    assert not HubPush.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "team/bad name", "team/--x"])
def test_bad_repo_id_is_refused(scored, repo_id):
    with pytest.raises(ApplicationError) as refused:
        hub_push_create(export=finished_export(scored, "jsonl"), repo_id=repo_id, token_env="HF_TOKEN", enqueue=False)
    assert refused.value.field == "repo_id"


def member(project, role):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role=role)
    return user


@pytest.mark.django_db
def test_page_form_pushes_and_shows_the_state(client, scored, hub, django_capture_on_commit_callbacks):
    project = scored["project"]
    export = finished_export(scored, "parquet")
    client.force_login(member(project, Role.VIEWER))
    assert b"Push to the Hub" not in client.get(reverse("exports:list", args=[project.pk])).content
    assert client.post(reverse("exports:push", args=[project.pk]), {}).status_code == 403
    client.force_login(member(project, Role.EDITOR))
    page = client.get(reverse("exports:list", args=[project.pk]))
    assert b"Push to the Hub" in page.content
    bad = client.post(reverse("exports:push", args=[project.pk]),
                      {"export": export.pk, "repo_id": "team/page", "token_env": "DATABASE_URL", "private": "on"})
    assert bad.status_code == 400 and b"may not be used as a token" in bad.content
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("exports:push", args=[project.pk]),
                               {"export": export.pk, "repo_id": "team/page", "token_env": "HF_TOKEN", "private": "on"})
    assert response.status_code == 302 and len(callbacks) == 1
    push = HubPush.objects.get(repo_id="team/page")
    hub_push_run(push_id=push.pk)  # what the queued job does
    page = client.get(reverse("exports:list", args=[project.pk]))
    assert f'id="hub-push-{push.pk}"'.encode() in page.content and b"succeeded" in page.content
    assert (hub.root / "team/page/data/train.parquet").exists()


@pytest.mark.django_db
def test_api_push_is_a_job_and_the_export_shows_it(scored, hub, django_capture_on_commit_callbacks):
    project = scored["project"]
    export = finished_export(scored, "csv")
    api = APIClient()
    api.force_authenticate(member(project, Role.EDITOR))
    url = f"/api/v1/projects/{project.pk}/exports/{export.pk}/push/"
    refused = api.post(url, {"repo_id": "team/api", "token_env": "CELERY_BROKER_URL"}, format="json")
    assert refused.status_code == 400, refused.content
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = api.post(url, {"repo_id": "team/api", "token_env": "HF_TOKEN", "private": False}, format="json")
    assert created.status_code == 202, created.content
    assert created.json()["status"] == "pending" and len(callbacks) == 1
    hub_push_run(push_id=created.json()["id"])
    body = api.get(f"/api/v1/projects/{project.pk}/exports/{export.pk}/").json()
    assert body["hub_pushes"][0]["status"] == "succeeded" and body["hub_pushes"][0]["url"].startswith(hub.url)
    assert hub.repos["team/api"]["visibility"] == "public"
    _, data = load_pushed(hub.root, "team/api", "data/train.csv")
    assert data.num_rows == 9


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_push_runs_on_a_real_celery_worker(tmp_path, settings, start_worker, private_broker):
    """The push job on a real `celery worker` process, whose environment holds the token and HF_ENDPOINT (the test
    process has neither)."""
    from webapp.settings import test as test_settings
    from workers.celery import app

    settings.MEDIA_ROOT = test_settings.MEDIA_ROOT  # the worker reads the export where its settings say
    scored = build_scored_project()
    export = finished_export(scored, "parquet")
    with FakeHub(tmp_path / "hub", token=TOKEN) as server:
        worker = start_worker("hub", {"CELERY_BROKER_URL": private_broker, "HF_ENDPOINT": server.url,
                                      "HUB_TEST_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1"},
                              concurrency=1)
        push = hub_push_create(export=export, repo_id="team/worker", token_env="HUB_TEST_TOKEN", enqueue=False)
        with app.connection_for_write(private_broker) as connection:
            app.send_task("workers.exports.push_export", kwargs={"push_id": push.pk}, queue="default",
                          connection=connection)
        deadline = time.monotonic() + 60
        while (push := HubPush.objects.get(pk=push.pk)).status not in JobStatus.finished():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.3)
        assert push.status == JobStatus.SUCCEEDED, push.error
        _, data = load_pushed(server.root, "team/worker", "data/train.parquet")
        assert data.num_rows == 9 and server.commits[-1]["lfs_files"] == ["data/train.parquet"]
    export.file.delete(save=False)  # the shared media folder stays clean
