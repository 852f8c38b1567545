"""The export form in real Chromium: only the filters of the chosen kind show (static/js/export-form.js), and an
export is made by picking names, never typing ids."""

from __future__ import annotations

import pytest

from tests.factories import MembershipFactory, UserFactory
from tests.webapp.exports.conftest import build_scored_project
from webapp.core.models import Role
from webapp.exports.models import Export

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_kind_shows_its_filters_and_names_are_picked(page, live_server, login):
    scored = build_scored_project()
    editor = UserFactory()
    MembershipFactory(project=scored["project"], user=editor, role=Role.EDITOR)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    login(editor.username, "pw")
    page.goto(f"{live_server.url}/p/{scored['project'].pk}/exports/")
    form = page.locator("#export-form")
    shown = {name: form.locator(f"[name={name}]") for name in ("threshold", "margin", "preference_source", "limit")}
    assert not shown["threshold"].is_visible() and not shown["margin"].is_visible() and shown["limit"].is_visible()
    form.locator("[name=kind]").select_option("sft")
    assert shown["threshold"].is_visible() and not shown["margin"].is_visible()
    form.locator("[name=kind]").select_option("preferences")
    assert not shown["threshold"].is_visible()
    assert shown["margin"].is_visible() and shown["preference_source"].is_visible()

    form.locator("[name=kind]").select_option("sft")
    form.locator("[name=task]").select_option(label="arith")
    form.locator("[name=rubric_version]").select_option(label="arith-rubric v1")
    form.locator("[name=threshold]").fill("0.5")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    export = Export.objects.get(project=scored["project"])
    assert export.filters == {"task": scored["task"].pk, "rubric_version": scored["version"].pk, "threshold": 0.5}
    assert "task: arith" in page.locator(f"#export-{export.pk}").inner_text()
    assert errors == []
