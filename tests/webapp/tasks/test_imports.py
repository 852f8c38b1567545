"""Importing examples through the browser flow: upload → mapping preview → confirm. Every bad file gets a clear
message that names the line (or row) and column, and nothing is written unless the whole file is good."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.urls import reverse

from tests.factories import ExampleFactory, TaskFactory
from webapp.core.errors import ApplicationError
from webapp.core.models import Role
from webapp.tasks import services
from webapp.tasks.models import Example

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def editor(client, make_member):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    return user


@pytest.fixture
def task(editor):
    return TaskFactory(project=editor.memberships.get().project)


def upload(client, task, name: str, content: bytes):
    url = reverse("tasks:import_upload", args=[task.project_id, task.pk])
    return client.post(url, {"file": SimpleUploadedFile(name, content)})


def staged_token(response) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    return re.search(r"token=([\w-]+)", response["Location"]).group(1)


def preview(client, task, token: str):
    return client.get(reverse("tasks:import_preview", args=[task.project_id, task.pk]), {"token": token})


def confirm(client, task, token: str, roles: list[str], **options):
    data = {"token": token, "default_split": "train", "unknown_columns": "info", **options}
    data.update({f"col_{i}": role for i, role in enumerate(roles)})
    return client.post(reverse("tasks:import_confirm", args=[task.project_id, task.pk]), data)


def upload_error(client, task, name: str, content: bytes) -> str:
    response = upload(client, task, name, content)
    assert response.status_code in (400, 413), response.status_code
    assert not Example.objects.filter(task=task).exists()
    return response.context["form"].errors["file"][0]


def import_error(client, task, name: str, content: bytes, roles: list[str], **options) -> str:
    token = staged_token(upload(client, task, name, content))
    response = confirm(client, task, token, roles, **options)
    assert response.status_code == 400
    assert not Example.objects.filter(task=task).exclude(external_id="taken").exists()
    return " ".join(response.context["form"].non_field_errors())


def jsonl(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows).encode()


# --- happy paths ------------------------------------------------------------------------------------------------


def test_jsonl_import_guesses_the_mapping_and_keeps_other_keys_in_info(
    client, task, media, django_capture_on_commit_callbacks
):
    content = jsonl(
        {"id": "q1", "question": "Combien font 2 + 2 ?", "answer": 4, "split": "train", "level": 1},
        "",
        {"id": "q2", "question": "What is 3 × 3?", "answer": "9", "split": "test", "level": 2},
        {"id": "q3", "question": "Late key", "answer": "1", "source": "later"},
    )
    token = staged_token(upload(client, task, "math.jsonl", content))
    page = preview(client, task, token)
    html = page.content.decode()
    assert page.status_code == 200 and "Combien font 2 + 2 ?" in html and "Nothing has been written yet" in html
    form = page.context["form"]
    assert form.columns == ["id", "question", "answer", "split", "level", "source"]
    guessed = [form[f"col_{i}"].initial for i in range(len(form.columns))]
    assert guessed == ["id", "prompt", "answer", "split", "info", "info"]
    assert not Example.objects.filter(task=task).exists()  # the preview writes nothing

    with django_capture_on_commit_callbacks(execute=True):
        response = confirm(client, task, token, guessed)
    assert response.status_code == 302
    rows = {e.external_id: e for e in Example.objects.filter(task=task)}
    assert rows["q1"].prompt == "Combien font 2 + 2 ?" and rows["q1"].answer == "4"
    assert rows["q2"].split == "eval" and rows["q2"].info == {"level": 2}
    assert rows["q3"].split == "train" and rows["q3"].info == {"source": "later"}
    assert not (media / "imports" / token).exists()  # the staged file is gone after the import


def test_csv_import_with_a_user_chosen_mapping(client, task):
    content = (
        b"qid,question,gold,fold,source,notes\r\n"
        b'a-1,"What is 1 + 1?\nShow your work.",2,train,synthetic,keep me\r\n'
        b"a-2,What is 2 + 5?,7,eval,synthetic,\r\n"
    )
    token = staged_token(upload(client, task, "data.csv", content))
    assert preview(client, task, token).context["form"].columns == ["qid", "question", "gold", "fold", "source", "notes"]
    response = confirm(client, task, token, ["id", "prompt", "answer", "split", "ignore", "info"])
    assert response.status_code == 302
    first, second = Example.objects.filter(task=task).order_by("external_id")
    assert first.prompt == "What is 1 + 1?\nShow your work." and first.answer == "2"
    assert first.info == {"notes": "keep me"} and second.split == "eval"


def test_semicolon_csv_with_bom_and_no_id_column_gets_row_ids(client, task):
    content = "\ufeffprompt;answer\n2+2?;4\n3+3?;6\n".encode()
    token = staged_token(upload(client, task, "semi.csv", content))
    assert preview(client, task, token).context["form"].columns == ["prompt", "answer"]
    assert confirm(client, task, token, ["prompt", "answer"], default_split="eval").status_code == 302
    assert sorted(Example.objects.filter(task=task).values_list("external_id", "split")) == [
        ("row-2", "eval"), ("row-3", "eval")]


def test_parquet_import_converts_values_to_json(client, task, tmp_path):
    import datetime as dt

    table = pa.table({
        "id": [1, 2, 3],
        "prompt": ["a?", "b?", "c?"],
        "answer": ["A", "B", None],
        "meta": [{"level": 1}, {"level": 2}, {"level": 3}],
        "day": [dt.date(2026, 1, 1)] * 3,
        "messages": [[{"role": "user", "content": "a?"}], None, None],
    })
    path = tmp_path / "d.parquet"
    pq.write_table(table, path)
    token = staged_token(upload(client, task, "data.parquet", path.read_bytes()))
    assert "Row" in preview(client, task, token).content.decode()
    assert confirm(client, task, token, ["id", "prompt", "answer", "info", "info", "messages"]).status_code == 302
    example = Example.objects.get(task=task, external_id="1")
    assert example.info == {"meta": {"level": 1}, "day": "2026-01-01"}
    assert example.messages == [{"role": "user", "content": "a?"}]
    assert Example.objects.get(task=task, external_id="3").answer == ""


# --- bad files --------------------------------------------------------------------------------------------------


def test_wrong_encodings_and_binary_files_get_a_clear_message(client, task):
    latin1 = "id,prompt\n1,Café crème\n".encode("latin-1")
    message = upload_error(client, task, "latin.csv", latin1)
    assert message.startswith("Line 2, column 6: byte 0xE9 is not valid UTF-8.") and "Latin-1" in message
    assert "UTF-16" in upload_error(client, task, "u16.csv", "id,prompt\n1,x\n".encode("utf-16"))
    assert "UTF-16" in upload_error(client, task, "u16le.jsonl", '{"id": 1}\n'.encode("utf-16-le"))
    assert "not a text file" in upload_error(client, task, "junk.csv", bytes(range(256)) * 4)
    assert "not valid UTF-8" in upload_error(client, task, "junk.jsonl", bytes(range(128, 256)) * 4)
    assert "compressed" in upload_error(client, task, "data.jsonl", gzip.compress(b'{"id": 1}\n'))
    assert "empty" in upload_error(client, task, "empty.csv", b"")
    assert "CSV UTF-8" in upload_error(client, task, "sheet.xlsx", b"PK\x03\x04" + b"\x00" * 64)
    assert "has no rows" in upload_error(client, task, "header.csv", b"id,prompt\n")
    assert "no PAR1 header" in upload_error(client, task, "fake.parquet", b"id,prompt\n1,x\n")
    assert "cannot be read" in upload_error(client, task, "broken.parquet", b"PAR1" + b"\x00junk" * 10 + b"PAR1")


def test_malformed_jsonl_and_csv_name_the_line(client, task):
    assert upload_error(client, task, "a.jsonl", b'{"id": 1, "prompt": "x"}\n{"id": 2 "prompt": "y"}\n') == (
        "Line 2, column 10: not valid JSON (Expecting ',' delimiter).")
    assert "Line 1: expected a JSON object" in upload_error(client, task, "b.jsonl", b'"just text"\n')
    assert "JSON array, not JSON Lines" in upload_error(client, task, "c.json", b'[{"id": 1},\n{"id": 2}]\n')
    message = upload_error(client, task, "d.csv", b"id,prompt,answer\n1,x,y\n2,only two\n")
    assert message.startswith("Line 3: 2 values, but the header has 3 columns")
    assert "names column 'id' twice" in upload_error(client, task, "e.csv", b"id,id\n1,2\n")
    # a bad line after the preview rows is found at confirm time, with its number, and nothing is written
    rows = [{"id": i, "prompt": "p"} for i in range(30)]
    content = jsonl(*rows) + b"{oops\n"
    assert import_error(client, task, "late.jsonl", content, ["id", "prompt"]).startswith(
        "Line 31, column 2: not valid JSON")


def test_values_postgres_cannot_store_are_refused_or_cleaned(client, task, tmp_path):
    message = upload_error(client, task, "nan.jsonl", b'{"id": 1, "prompt": "x", "score": NaN}\n')
    assert message == "Line 1, column 1: not valid JSON (NaN is not valid JSON; use null)."
    content = b'{"id": 1, "prompt": "x"}\n{"id": 2, "prompt": "a\\u0000b"}\n'
    assert import_error(client, task, "nul.jsonl", content, ["id", "prompt"]) == (
        "Line 2: contains a NUL character (\\u0000), which cannot be stored.")
    content = b'{"id": 1, "prompt": "x"}\n{"id": 2, "prompt": "x", "k": "\\ud800"}\n'
    assert upload_error(client, task, "sur.jsonl", content).startswith(
        "Line 2: contains an invalid character (a lone surrogate")
    path = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"id": ["a"], "prompt": ["p"], "score": [float("nan")]}), path)
    token = staged_token(upload(client, task, "nan.parquet", path.read_bytes()))
    assert confirm(client, task, token, ["id", "prompt", "info"]).status_code == 302
    assert Example.objects.get(task=task).info == {"score": None}


def test_duplicate_ids_in_the_file_or_the_task_write_nothing(client, task):
    content = jsonl({"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}, {"id": "a", "prompt": "z"})
    assert import_error(client, task, "dup.jsonl", content, ["id", "prompt"]) == (
        "Line 3: duplicate id 'a' (also on line 1). Nothing was imported.")
    ExampleFactory(task=task, external_id="taken")
    content = jsonl({"id": "new", "prompt": "x"}, {"id": "taken", "prompt": "y"})
    assert import_error(client, task, "dup2.jsonl", content, ["id", "prompt"]) == (
        "Line 2: id 'taken' already exists in this task. Nothing was imported.")
    assert list(task.examples.values_list("external_id", flat=True)) == ["taken"]


def test_bad_cells_name_line_and_column(client, task):
    content = b"id,prompt,split\n1,x,train\n2,y,holdout\n"
    assert import_error(client, task, "s.csv", content, ["id", "prompt", "split"]) == (
        "Line 3, column 'split': unknown split 'holdout' (use train or eval; test/validation/dev count as eval).")
    content = jsonl({"id": "1", "prompt": {"text": "x"}})
    assert import_error(client, task, "o.jsonl", content, ["id", "prompt"]) == (
        "Line 1, column 'prompt': the prompt must be text, got an object.")
    assert import_error(client, task, "e.csv", b"id,prompt\n1,x\n ,y\n", ["id", "prompt"]) == (
        "Line 3, column 'id': the id is empty.")
    content = jsonl({"id": "1", "prompt": "x"}, {"prompt": "y"})
    assert import_error(client, task, "m.jsonl", content, ["id", "prompt"]) == "Line 2: no value for the id column 'id'."
    content = b'id,messages\n1,"[{""role"": ""user""}]"\n'
    assert "messages must be a list" in import_error(client, task, "c.csv", content, ["id", "messages"])


def test_mapping_mistakes_are_reported_before_reading_the_file(client, task):
    content = b"a,b\n1,x\n"
    assert "both mapped to example id" in import_error(client, task, "m.csv", content, ["id", "id"])
    assert "holds the prompt" in import_error(client, task, "m.csv", content, ["id", "info"])


def test_unknown_columns_after_the_preview_can_be_ignored(client, task):
    rows = [{"id": i, "prompt": "p"} for i in range(12)] + [{"id": 99, "prompt": "p", "extra": "e"}]
    token = staged_token(upload(client, task, "x.jsonl", jsonl(*rows)))
    assert confirm(client, task, token, ["id", "prompt"], unknown_columns="ignore").status_code == 302
    assert Example.objects.get(task=task, external_id="99").info == {}


def test_size_limit_is_checked_before_the_file_is_copied(client, task, settings, media, tmp_path):
    settings.RUBRICON_MAX_IMPORT_MB = 1
    message = upload_error(client, task, "big.jsonl", b'{"id": 1, "prompt": "x"}\n' * 50_000)
    assert message == ("The file is 1 MB; imports are limited to 1 MB. "
                       "Split it into smaller files and import them one after another.")
    settings.RUBRICON_MAX_IMPORT_MB = 100
    # A 200 MB upload as Django hands it over (a temporary file on disk; sparse here, so the test stays fast).
    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:
        handle.truncate(200 * 1024 * 1024)
    with open(path, "rb") as handle:
        big = UploadedFile(handle, name="huge.csv", size=path.stat().st_size)
        with pytest.raises(ApplicationError) as info:
            services.example_import_stage(task=task, user=task.project.memberships.get().user, upload=big)
    assert info.value.message.startswith("The file is 200 MB; imports are limited to 100 MB.")
    assert not (media / "imports").exists() or not any((media / "imports").iterdir())


def test_staged_uploads_belong_to_their_user_and_task(client, task, make_member):
    token = staged_token(upload(client, task, "a.jsonl", jsonl({"id": 1, "prompt": "x"})))
    other_task = TaskFactory(project=task.project)
    response = client.get(reverse("tasks:import_preview", args=[task.project_id, other_task.pk]), {"token": token})
    assert response.status_code == 404 and b"upload the file again" in response.content
    colleague, _ = make_member(Role.EDITOR, project=task.project)
    client.force_login(colleague)
    assert preview(client, task, token).status_code == 404
    assert preview(client, task, "../../etc").status_code == 404
    assert confirm(client, task, token, ["id", "prompt"]).status_code == 404
    assert not Example.objects.filter(task=task).exists()


def test_cancel_discards_the_staged_file(client, task, media):
    token = staged_token(upload(client, task, "a.jsonl", jsonl({"id": 1, "prompt": "x"})))
    assert (media / "imports" / token).is_dir()
    client.post(reverse("tasks:import_cancel", args=[task.project_id, task.pk]), {"token": token})
    assert not (media / "imports" / token).exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANNOTATOR])
def test_only_editors_import(client, make_member, role, tmp_path):
    user, project = make_member(role)
    task = TaskFactory(project=project)
    client.force_login(user)
    assert client.get(reverse("tasks:import_upload", args=[project.pk, task.pk])).status_code == 403
    assert upload(client, task, "a.jsonl", jsonl({"id": 1, "prompt": "x"})).status_code == 403
    assert not Path(tmp_path / "media" / "imports").exists()


def test_long_csv_fields_import(client, task):
    long_prompt = "x" * 300_000  # above the csv module's default 128 KiB field cap
    token = staged_token(upload(client, task, "long.csv", f"id,prompt\n1,{long_prompt}\n".encode()))
    assert confirm(client, task, token, ["id", "prompt"]).status_code == 302
    assert len(Example.objects.get(task=task).prompt) == 300_000
