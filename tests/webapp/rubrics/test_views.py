"""Rubric editor, history, diff and restore pages: roles, inline errors, stale edits, htmx fragments, query counts."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from tests.factories import TaskFactory
from webapp.core.models import Role
from webapp.rubrics.models import Rubric, RubricVersion
from webapp.rubrics.services import rubric_create, rubric_version_create

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
FIXTURE_REWARD = "tests.training.rubrics.reward_fixtures.mentions_reference"

EVERY_KIND = {
    "criteria": [
        {"key": "helpful", "title": "Helpful", "kind": "judge", "weight": 2.0, "description": "For the user",
         "question": "Does {{ completion }} answer {{ prompt }}?\nBe strict.", "use_reference": True,
         "choices": [{"label": "no", "description": "wrong"}, {"label": "partly", "description": ""},
                     {"label": "yes", "description": "fully"}]},
        {"key": "rated", "title": "Rated", "kind": "judge", "weight": 1, "question": "Rate it.",
         "scale": {"min": 1, "max": 10}},
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1, "extract": "boxed", "mode": "regex",
         "pattern": r"^\d+ apples$"},
        {"key": "close", "title": "Close", "kind": "match", "weight": 0.5, "extract": "last_number", "mode": "numeric",
         "tolerance": 0.01, "value": 3.14},
        {"key": "tags", "title": "Tags", "kind": "format", "weight": 0, "check": "think_answer_tags"},
        {"key": "shape", "title": "Shape", "kind": "json", "weight": 1, "extract": "full",
         "schema": {"type": "object", "required": ["answer"]}},
        {"key": "short", "title": "Short", "kind": "length", "weight": 1, "unit": "tokens", "min": 10, "max": 300,
         "slack": 50},
        {"key": "mentions", "title": "Mentions", "kind": "python", "weight": 1, "function": FIXTURE_REWARD},
    ],
    "gates": [{"criterion": "correct", "below": 0.5}],
    "judge": {"max_criteria_per_call": 2, "group_relative": True},
}
SIMPLE = {"criteria": [{"key": "correct", "title": "Correct", "kind": "match", "mode": "numeric"}]}


class FormFields(HTMLParser):
    """The fields a browser would submit from the form with the given id (no button pressed)."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, []
        self._select: str | None = None
        self._textarea: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio"):
                if "checked" in a:
                    self.fields.append((a["name"], a.get("value", "on")))
            else:
                self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select and "selected" in a:
            self.fields.append((self._select, a.get("value", "")))
        elif tag == "textarea":
            self._textarea, self._text = a.get("name"), ""

    def handle_data(self, data):
        if self._textarea:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea" and self._textarea:
            # the HTML parser keeps the newline browsers drop right after <textarea>
            self.fields.append((self._textarea, self._text.removeprefix("\n")))
            self._textarea = None


def form_fields(response, form_id: str = "rubric-editor") -> dict[str, str]:
    parser = FormFields(form_id)
    parser.feed(response.content.decode())
    fields = dict(parser.fields)
    assert len(fields) == len(parser.fields), "duplicate input names"
    return fields


@pytest.fixture
def editor(client, make_member):
    user, project = make_member(Role.EDITOR)
    client.force_login(user)
    return user


@pytest.fixture
def project(editor):
    return editor.memberships.get().project


@pytest.fixture
def rubric(project, editor):
    return rubric_create(project=project, name="Arithmetic", spec=SIMPLE, author=editor)


def errors_at(html: str, path: str) -> list[str]:
    slot = "err-" + path.replace(".", "-")
    match = re.search(rf'<ul class="field-errors" id="{slot}"[^>]*>(.*?)</ul>', html, re.S)
    assert match, f"no error list for {path}"
    return re.findall(r"<li>(.*?)</li>", match.group(1), re.S)


def test_roles(client, make_member, rubric):
    project = rubric.project
    viewer, _ = make_member(Role.VIEWER, project=project)
    client.force_login(viewer)
    for url in (reverse("rubrics:list", args=[project.pk]), reverse("rubrics:detail", args=[project.pk, rubric.pk]),
                reverse("rubrics:version", args=[project.pk, rubric.pk, 1]),
                reverse("rubrics:diff", args=[project.pk, rubric.pk])):
        response = client.get(url)
        assert response.status_code == 200
        assert reverse("rubrics:edit", args=[project.pk, rubric.pk]) not in response.content.decode()
    assert client.get(reverse("rubrics:create", args=[project.pk])).status_code == 403
    assert client.get(reverse("rubrics:edit", args=[project.pk, rubric.pk])).status_code == 403
    assert client.post(reverse("rubrics:validate", args=[project.pk]), {}).status_code == 403
    assert client.post(reverse("rubrics:edit", args=[project.pk, rubric.pk]), {"op": "save"}).status_code == 403
    assert client.post(reverse("rubrics:restore", args=[project.pk, rubric.pk, 1])).status_code == 403
    outsider, _ = make_member(Role.OWNER)
    client.force_login(outsider)
    assert client.get(reverse("rubrics:detail", args=[project.pk, rubric.pk])).status_code == 404
    assert client.get(reverse("rubrics:edit", args=[project.pk, rubric.pk])).status_code == 404


def test_every_kind_renders_and_posts_back_the_same_spec(client, settings, rubric):
    settings.RUBRICON_PYTHON_REWARD_ALLOWLIST = [FIXTURE_REWARD]
    rubric_version_create(rubric=rubric, spec=EVERY_KIND, note="all kinds")
    url = reverse("rubrics:edit", args=[rubric.project_id, rubric.pk])
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-share-for="f-criteria-0-weight">26.7%<' in html  # 2 of a positive total of 7.5
    assert 'data-share-for="f-criteria-4-weight">metric<' in html
    fields = form_fields(page)
    assert fields["base_version"] == "2" and fields["criteria.5.schema"].startswith("{\n")
    response = client.post(url, {**fields, "op": "save"})
    assert response.status_code == 302
    assert rubric.versions.count() == 2  # nothing changed: no new version
    response = client.post(url, {**fields, "criteria.6.max": "250", "note": "tighter", "op": "save"})
    assert response.status_code == 302
    v3 = rubric.versions.get(number=3)
    assert v3.note == "tighter" and v3.spec == {
        **EVERY_KIND, "criteria": [*EVERY_KIND["criteria"][:6], {**EVERY_KIND["criteria"][6], "max": 250},
                                   EVERY_KIND["criteria"][7]]}


def test_create_with_an_invalid_regex_shows_it_at_the_field_and_writes_nothing(client, project):
    url = reverse("rubrics:create", args=[project.pk])
    page = client.get(url)
    fields = form_fields(page)
    assert fields["criteria.0.kind"] == "judge"
    response = client.post(url, {**fields, "op": "add:match"}, **HTMX)
    assert response.status_code == 200 and "<html" not in response.content.decode()
    fields = form_fields(response)
    fields.update({"name": "Quiz", "criteria.0.title": "Helpful", "criteria.0.question": "Is it {{ completion }}?",
                   "criteria.1.title": "Apples", "criteria.1.mode": "regex", "criteria.1.pattern": "(a+"})
    response = client.post(url, {**fields, "op": "save"})
    assert response.status_code == 400
    html = response.content.decode()
    assert errors_at(html, "criteria.1.pattern")[0].startswith("invalid regex (missing ): (a+)")
    assert 'name="criteria.1.pattern" value="(a+"' in html and "1 problem to fix; nothing was saved." in html
    # The summary names the field in the page's words (issue 19: it printed `criteria.1.pattern`).
    assert '<a href="#f-criteria-1-pattern">Criterion 2 · Pattern</a>: invalid regex' in html
    assert ">criteria.1.pattern<" not in html
    assert not Rubric.objects.filter(project=project).exists()
    response = client.post(url, {**fields, "criteria.1.pattern": "^a+$", "op": "save"})
    rubric = Rubric.objects.get(project=project, name="Quiz")
    assert response["Location"] == reverse("rubrics:detail", args=[project.pk, rubric.pk])
    assert [c["kind"] for c in rubric.versions.get().spec["criteria"]] == ["judge", "match"]


def test_errors_speak_the_editor_words_for_paths_in_messages_too(client, project):
    """A duplicate key: the engine's message names the other criterion by its path; the page says "criterion 1"."""
    url = reverse("rubrics:create", args=[project.pk])
    fields = form_fields(client.post(url, {**form_fields(client.get(url)), "op": "add:match"}, **HTMX))
    fields.update({"name": "Dup", "criteria.0.title": "A", "criteria.0.question": "Is it {{ completion }}?",
                   "criteria.1.title": "B", "criteria.1.key": fields["criteria.0.key"]})
    summary = re.search(r'<ul class="problems">.*?</ul>', client.post(url, {**fields, "op": "save"}).content.decode(), re.S)
    assert summary and "Criterion 2 · Key</a>: key" in summary.group(0)
    assert "already used by criterion 1; keys must be unique" in summary.group(0) and "criteria." not in summary.group(0)
    fields.update({"criteria.1.key": "other", "criteria.1.weight": "x"})
    summary = re.search(r'<ul class="problems">.*?</ul>', client.post(url, {**fields, "op": "save"}).content.decode(), re.S)
    assert summary and '<a href="#f-criteria-1-weight">Criterion 2 · Weight</a>: enter a number' in summary.group(0)


def test_field_errors_for_weights_schema_and_jinja(client, project):
    url = reverse("rubrics:create", args=[project.pk])
    fields = form_fields(client.get(url))
    fields = form_fields(client.post(url, {**fields, "op": "add:json"}, **HTMX))
    fields.update({"name": "R", "criteria.0.title": "Q", "criteria.0.question": "{{ completion | nope }}",
                   "criteria.0.weight": "0", "criteria.1.title": "J", "criteria.1.weight": "0",
                   "criteria.1.schema": '{"type": 5}'})
    html = client.post(url, {**fields, "op": "check"}).content.decode()
    assert errors_at(html, "criteria.0.question") == ["template error on line 1: No filter named &#x27;nope&#x27;."]
    assert errors_at(html, "criteria.1.schema")[0].startswith("invalid JSON Schema at type")
    assert errors_at(html, "criteria") == []
    # the engine checks the weights once every criterion is valid on its own
    fields.update({"criteria.0.question": "{{ completion | upper }}", "criteria.1.schema": '{"type": "object"}'})
    html = client.post(url, {**fields, "op": "check"}).content.decode()
    assert errors_at(html, "criteria") == ["all weights are 0; give at least one criterion a weight &gt; 0"]
    assert "1 problem to fix" in html
    fields["criteria.1.schema"] = '{"type": "object",'
    html = client.post(url, {**fields, "op": "check"}).content.decode()
    assert errors_at(html, "criteria.1.schema") == ["not valid JSON: Expecting property name enclosed in double "
                                                    "quotes (line 1, column 19)"]


def test_live_validation_swaps_every_error_list_out_of_band(client, rubric):
    project = rubric.project
    edit_url = reverse("rubrics:edit", args=[project.pk, rubric.pk])
    fields = form_fields(client.get(edit_url))
    fields.update({"criteria.0.mode": "regex", "criteria.0.pattern": "(?<=a)b"})
    url = reverse("rubrics:validate_rubric", args=[project.pk, rubric.pk])
    html = client.post(url, fields, **HTMX).content.decode()
    assert "<html" not in html and '<div id="editor-summary" aria-live="polite" hx-swap-oob="true">' in html
    assert "RE2 syntax" in errors_at(html, "criteria.0.pattern")[0]
    assert errors_at(html, "criteria.0.title") == [] and 'id="err-criteria-0-title" hx-swap-oob="true"' in html
    fields["criteria.0.pattern"] = r"^\d+$"
    html = client.post(url, fields, **HTMX).content.decode()
    assert errors_at(html, "criteria.0.pattern") == [] and "No problems found." in html
    rubric_version_create(rubric=rubric, spec={"criteria": [{**SIMPLE["criteria"][0], "weight": 2}]})
    html = client.post(url, fields, **HTMX).content.decode()
    assert "v2 was saved since you opened this editor" in html


def test_structural_edits_through_htmx(client, rubric):
    url = reverse("rubrics:edit", args=[rubric.project_id, rubric.pk])
    fields = form_fields(client.get(url))
    fields = form_fields(client.post(url, {**fields, "op": "add:length"}, **HTMX))
    fields = form_fields(client.post(url, {**fields, "op": "add:judge"}, **HTMX))
    assert [fields[f"criteria.{i}.key"] for i in range(3)] == ["correct", "length_1", "judge_1"]
    response = client.post(url, {**fields, "op": "up:2"}, **HTMX)
    assert 'id="f-criteria-1-up"' in response.content.decode()
    fields = form_fields(response)
    assert [fields[f"criteria.{i}.key"] for i in range(3)] == ["correct", "judge_1", "length_1"]
    fields["criteria.2.kind"] = "format"  # kind select: the form is re-rendered with the new kind's fields
    fields = form_fields(client.post(url, {**fields, "op": "refresh"}, **HTMX))
    assert fields["criteria.2.check"] == "answer_tag" and "criteria.2.max" not in fields
    fields = form_fields(client.post(url, {**fields, "op": "remove:0"}, **HTMX))
    assert [(fields[f"criteria.{i}.key"], fields[f"criteria.{i}.kind"]) for i in range(2)] == [
        ("judge_1", "judge"), ("length_1", "format")]
    assert "criteria.2.key" not in fields
    assert RubricVersion.objects.filter(rubric=rubric).count() == 1  # structural edits save nothing
    page = client.post(url, {**fields, "op": "add:format"})  # without JavaScript: the whole page comes back
    assert page.status_code == 200 and "<html" in page.content.decode() and "criteria.2.check" in form_fields(page)


def test_saving_over_a_newer_version_is_refused_with_409_keeping_the_edits(client, rubric):
    url = reverse("rubrics:edit", args=[rubric.project_id, rubric.pk])
    fields = form_fields(client.get(url))
    rubric_version_create(rubric=rubric, spec={"criteria": [{**SIMPLE["criteria"][0], "weight": 3}]}, note="theirs")
    fields.update({"criteria.0.title": "Mine", "note": "mine"})
    response = client.post(url, {**fields, "op": "save"}, **HTMX)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Not saved: v2 was saved by someone after you opened v1." in html
    assert f'{reverse("rubrics:diff", args=[rubric.project_id, rubric.pk])}?a=1&amp;b=2' in html
    again = form_fields(response)
    assert again["criteria.0.title"] == "Mine" and again["base_version"] == "2"
    assert rubric.versions.count() == 2
    response = client.post(url, {**again, "op": "save"}, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"].endswith(f"/rubrics/{rubric.pk}/")
    assert rubric.versions.get(number=3).spec["criteria"][0]["title"] == "Mine"


def test_a_drafted_spec_opens_the_editor_prefilled_and_unsaved(client, project, rubric):
    draft = {"criteria": [{"key": "cites", "title": "Cites a source", "kind": "judge", "question": "Cites {{ nope }}?",
                          "choices": [{"label": "no"}, {"label": "yes"}]}]}
    response = client.post(reverse("rubrics:create", args=[project.pk]),
                           {"spec_json": json.dumps(draft), "name": "Drafted", "description": "From the AI"})
    assert response.status_code == 200
    fields = form_fields(response)
    assert fields["name"] == "Drafted" and fields["criteria.0.title"] == "Cites a source"
    assert "unknown template variable(s) [&#x27;nope&#x27;]" in errors_at(response.content.decode(),
                                                                          "criteria.0.question")[0]
    response = client.post(reverse("rubrics:edit", args=[project.pk, rubric.pk]), {"spec_json": json.dumps(draft)})
    assert form_fields(response)["base_version"] == "1" and form_fields(response)["name"] == "Arithmetic"
    assert Rubric.objects.filter(project=project).count() == 1 and rubric.versions.count() == 1


def test_history_diff_and_restore(client, rubric):
    project = rubric.project
    rubric_version_create(rubric=rubric, note="v2", spec={"criteria": [
        {**SIMPLE["criteria"][0], "tolerance": 0.5},
        {"key": "short", "title": "Short", "kind": "length", "max": 100}]})
    page = client.get(reverse("rubrics:detail", args=[project.pk, rubric.pk])).content.decode()
    assert "Restore v1" in page and "Restore v2" not in page and "diff with v1" in page
    html = client.get(reverse("rubrics:diff", args=[project.pk, rubric.pk])).content.decode()  # latest vs previous
    assert "Compare v1 with v2" in html and "1 added" in html and "1 changed" in html
    assert re.search(r'data-field="correct.tolerance">\s*<td class="field-name">tolerance</td><td class="old">0</td>'
                     r'<td class="new">0.5</td>', html)
    response = client.post(reverse("rubrics:restore", args=[project.pk, rubric.pk, 1]))
    assert response.status_code == 302
    v3 = rubric.versions.get(number=3)
    assert v3.note == "Restored from v1" and v3.spec == SIMPLE
    html = client.get(reverse("rubrics:diff", args=[project.pk, rubric.pk]) + "?a=1&b=3").content.decode()
    assert "the same criteria, gates and judge options" in html
    assert client.get(reverse("rubrics:diff", args=[project.pk, rubric.pk]) + "?a=1&b=9").status_code == 404


def test_list_detail_and_diff_pages_use_a_constant_number_of_queries(client, project, editor,
                                                                      django_assert_max_num_queries):
    def build(n: int) -> Rubric:
        for i in range(n):
            r = rubric_create(project=project, name=f"R{Rubric.objects.count()}-{i}", spec=SIMPLE,
                              task=TaskFactory(project=project), author=editor)
        for k in range(n):
            rubric_version_create(rubric=r, spec={"criteria": [{**SIMPLE["criteria"][0], "weight": k + 2}]},
                                  author=editor)
        return r

    def count(url: str) -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries)

    small = build(1)
    pages = lambda r: [reverse("rubrics:list", args=[project.pk]),  # noqa: E731
                       reverse("rubrics:detail", args=[project.pk, r.pk]),
                       reverse("rubrics:diff", args=[project.pk, r.pk])]
    before = [count(url) for url in pages(small)]
    big = build(6)
    after = [count(url) for url in pages(big)]
    assert before == after
    with django_assert_max_num_queries(8):
        client.get(reverse("rubrics:list", args=[project.pk]))


def test_restoring_the_latest_version_is_refused(client, rubric):
    response = client.post(reverse("rubrics:restore", args=[rubric.project_id, rubric.pk, 1]), follow=True)
    assert "v1 is already the latest version." in response.content.decode()
    assert rubric.versions.count() == 1


def test_detail_of_an_old_version_and_task_link(client, project, editor):
    task = TaskFactory(project=project)
    rubric = rubric_create(project=project, name="T", spec=SIMPLE, task=task, author=editor)
    rubric_version_create(rubric=rubric, spec={"criteria": [{**SIMPLE["criteria"][0], "weight": 0.5},
                                                            {"key": "x", "title": "X", "kind": "format",
                                                             "check": "boxed", "weight": 1.5}]})
    html = client.get(reverse("rubrics:version", args=[project.pk, rubric.pk, 1])).content.decode()
    assert "You are looking at v1; the latest is" in html
    html = client.get(reverse("rubrics:detail", args=[project.pk, rubric.pk])).content.decode()
    assert "25%" in html and "75%" in html and task.name in html
    assert client.get(reverse("rubrics:version", args=[project.pk, rubric.pk, 7])).status_code == 404
