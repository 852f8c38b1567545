"""Task pages and the htmx fragments of the examples table: roles, stale edits, constant query counts."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ExampleFactory, TaskFactory
from webapp.core.models import Role
from webapp.tasks.models import Example, Task

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def editor(client, make_member):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    return user


@pytest.fixture
def task(editor):
    return TaskFactory(project=editor.memberships.get().project, prompt_template="{{ prompt }}")


def task_form(task: Task, **changes) -> dict:
    data = {"name": task.name, "instructions": task.instructions, "system_prompt": task.system_prompt,
            "prompt_template": task.prompt_template, "kind": task.kind, "environment": task.environment,
            "environment_config": "{}", "row_version": task.row_version}
    return {**data, **changes}


def test_create_task_and_field_errors(client, editor):
    project = editor.memberships.get().project
    url = reverse("tasks:create", args=[project.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Quiz", "prompt_template": "{{ prompt", "kind": "single_turn",
                                 "environment_config": "{nope"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert errors["environment_config"] == ['Enter valid JSON, e.g. {"max_turns": 6}.']
    response = client.post(url, {"name": "Quiz", "prompt_template": "Q: {{ prompt", "kind": "single_turn"})
    assert response.context["form"].errors["prompt_template"][0].startswith("Line 1: unexpected end of template")
    response = client.post(url, {"name": "Quiz", "prompt_template": "Q: {{ prompt }}", "kind": "environment",
                                 "environment": "wordle", "environment_config": '{"max_turns": 6}'})
    task = Task.objects.get(project=project, name="Quiz")
    assert response["Location"] == reverse("tasks:detail", args=[project.pk, task.pk])
    assert task.environment_config == {"max_turns": 6} and task.created_by == editor


def test_edit_task_and_refuse_a_stale_edit_showing_the_current_value(client, task):
    url = reverse("tasks:edit", args=[task.project_id, task.pk])
    assert client.get(url).context["form"]["row_version"].value() == 1
    assert client.post(url, task_form(task, instructions="Mine")).status_code == 302  # now version 2
    response = client.post(url, task_form(task, instructions="Theirs", row_version=1))
    assert response.status_code == 409
    html = response.content.decode()
    assert "Someone saved this task after you opened it" in html
    assert "Current value (saved by someone else)" in html and "Mine" in html
    assert Task.objects.get(pk=task.pk).instructions == "Mine"
    # the re-shown form carries the current version: saving again is a deliberate overwrite
    assert response.context["form"]["row_version"].value() == "2"
    assert client.post(url, task_form(task, instructions="Theirs", row_version=2)).status_code == 302
    assert Task.objects.get(pk=task.pk).instructions == "Theirs"


def test_delete_task(client, task):
    ExampleFactory(task=task)
    response = client.post(reverse("tasks:delete", args=[task.project_id, task.pk]))
    assert response.status_code == 302 and not Task.objects.filter(pk=task.pk).exists()


def test_inline_edit_of_an_example_row(client, task):
    example = ExampleFactory(task=task, prompt="old", answer="1")
    edit = reverse("tasks:example_edit", args=[task.project_id, task.pk, example.pk])
    fragment = client.get(edit, **HTMX).content.decode()
    assert fragment.lstrip().startswith(f'<tr id="example-{example.pk}"') and "<textarea" in fragment
    assert "<html" not in fragment
    data = {"prompt": "new <b>prompt</b>", "answer": "2", "split": "eval", "info": '{"k": 1}', "row_version": 1}
    row = client.post(edit, data, **HTMX).content.decode()
    assert row.lstrip().startswith(f'<tr id="example-{example.pk}"') and "new &lt;b&gt;prompt&lt;/b&gt;" in row
    example.refresh_from_db()
    assert (example.prompt, example.answer, example.split, example.info, example.row_version) == (
        "new <b>prompt</b>", "2", "eval", {"k": 1}, 2)

    stale = client.post(edit, {**data, "prompt": "stale", "row_version": 1}, **HTMX)
    assert stale.status_code == 200  # htmx only swaps 2xx answers
    html = stale.content.decode()
    assert "Someone saved this example after you opened it" in html and "new &lt;b&gt;prompt&lt;/b&gt;" in html
    assert Example.objects.get(pk=example.pk).prompt == "new <b>prompt</b>"

    bad = client.post(edit, {**data, "info": "[1]", "row_version": 2}, **HTMX).content.decode()
    assert "Enter a JSON object" in bad
    for unstorable in ('{"x": NaN}', '{"x": "a\\u0000b"}'):
        bad = client.post(edit, {**data, "info": unstorable, "row_version": 2}, **HTMX).content.decode()
        assert "Enter valid JSON" in bad or "NUL character" in bad, unstorable
    cancel = client.get(reverse("tasks:example_row", args=[task.project_id, task.pk, example.pk]), **HTMX)
    assert "<textarea" not in cancel.content.decode()
    # without JavaScript the same URL is a page, and saving redirects back to the task
    assert "<html" in client.get(edit).content.decode()
    assert client.post(edit, {**data, "row_version": 2}).status_code == 302


def test_split_change_add_and_delete(client, task):
    example = ExampleFactory(task=task, split="train")
    split_url = reverse("tasks:example_split", args=[task.project_id, task.pk, example.pk])
    row = client.post(split_url, {"split": "eval", "row_version": 1}, **HTMX).content.decode()
    assert '<option value="eval" selected>' in row
    stale = client.post(split_url, {"split": "train", "row_version": 1}, **HTMX).content.decode()
    assert "someone edited this example meanwhile; it is now in eval" in stale
    assert Example.objects.get(pk=example.pk).split == "eval"

    add_url = reverse("tasks:example_add", args=[task.project_id, task.pk])
    response = client.post(add_url, {"external_id": "new-1", "prompt": "p", "split": "train", "info": ""}, **HTMX)
    html = response.content.decode()
    assert 'id="examples"' in html and "new-1" in html and 'hx-swap-oob="true"' in html
    duplicate = client.post(add_url, {"external_id": "new-1", "prompt": "p", "split": "train"}, **HTMX)
    assert duplicate["HX-Retarget"] == "#example-add"
    assert "already exists" in duplicate.content.decode()

    delete_url = reverse("tasks:example_delete", args=[task.project_id, task.pk, example.pk])
    assert client.post(delete_url, **HTMX).content == b""
    assert not Example.objects.filter(pk=example.pk).exists()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.ANNOTATOR])
def test_readers_cannot_write(client, make_member, role):
    user, project = make_member(role)
    task = TaskFactory(project=project)
    example = ExampleFactory(task=task)
    client.force_login(user)
    page = client.get(reverse("tasks:detail", args=[project.pk, task.pk])).content.decode()
    assert "Edit task" not in page and "hx-post" not in page
    p, t, e = project.pk, task.pk, example.pk
    writes = [
        ("tasks:create", [p]), ("tasks:edit", [p, t]), ("tasks:delete", [p, t]), ("tasks:example_add", [p, t]),
        ("tasks:example_edit", [p, t, e]), ("tasks:example_split", [p, t, e]), ("tasks:example_delete", [p, t, e]),
        ("tasks:import_upload", [p, t]), ("tasks:import_confirm", [p, t]),
    ]
    for name, args in writes:
        assert client.post(reverse(name, args=args), {"name": "x", "split": "eval"}).status_code == 403, name
    assert client.get(reverse("tasks:example_row", args=[p, t, e])).status_code == 200
    assert Task.objects.get(pk=task.pk).name == task.name and Example.objects.filter(pk=e).exists()


def test_other_projects_are_404(client, task):
    other = TaskFactory()
    example = ExampleFactory(task=other)
    mine, theirs = task.project_id, other.project_id
    for name, args in [("tasks:edit", [theirs, other.pk]), ("tasks:edit", [mine, other.pk]),
                       ("tasks:example_edit", [mine, other.pk, example.pk]),
                       ("tasks:example_edit", [mine, task.pk, example.pk]),
                       ("tasks:example_delete", [mine, task.pk, example.pk])]:
        assert client.post(reverse(name, args=args)).status_code == 404, (name, args)
    assert Example.objects.filter(pk=example.pk).exists()


def test_examples_table_query_count_does_not_grow(client, task, django_assert_num_queries):
    url = reverse("tasks:detail", args=[task.project_id, task.pk])
    ExampleFactory.create_batch(2, task=task)
    client.get(url)  # warm the session
    import django.db
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(django.db.connection) as few:
        client.get(url)
        client.get(url, {"split": "eval"}, **HTMX)
    ExampleFactory.create_batch(60, task=task, info={"a": 1})
    with django_assert_num_queries(len(few)):
        client.get(url)
        page = client.get(url, {"split": "train"}, **HTMX)
    assert page.content.decode().count('class="example-row') == 50


def test_pages_work_without_javascript(client, task):
    add_url = reverse("tasks:example_add", args=[task.project_id, task.pk])
    page = client.get(add_url).content.decode()
    assert "<html" in page and 'hx-post="' + add_url not in page
    response = client.post(add_url, {"external_id": "plain", "prompt": "p", "split": "eval"})
    assert response.status_code == 302 and Example.objects.get(task=task, external_id="plain").split == "eval"
    assert client.post(add_url, {"external_id": "plain", "split": "eval"}).status_code == 400
    example = Example.objects.get(task=task, external_id="plain")
    split_url = reverse("tasks:example_split", args=[task.project_id, task.pk, example.pk])
    assert client.post(split_url, {"split": "train", "row_version": 1}).status_code == 302
    delete_url = reverse("tasks:example_delete", args=[task.project_id, task.pk, example.pk])
    assert client.post(delete_url).status_code == 302 and not Example.objects.filter(pk=example.pk).exists()


def test_a_task_with_rollouts_is_not_deleted(client, task):
    from tests.factories import RolloutFactory

    RolloutFactory(project=task.project, task=task)
    response = client.post(reverse("tasks:delete", args=[task.project_id, task.pk]), follow=True)
    assert "This task has 1 rollout(s)" in response.content.decode()
    assert Task.objects.filter(pk=task.pk).exists()
