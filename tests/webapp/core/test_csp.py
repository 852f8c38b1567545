"""Issue 15.6: a Content-Security-Policy without inline scripts, and pages that need none.

The walk covers every route of the URLconf (a new page is checked without anyone adding it here), rendered as a
project owner over a project with one of everything, and asserts: the CSP header is on every response, it allows
scripts only from our origin, and no HTML holds an inline script, an on*= handler, a javascript: URL or htmx code
that htmx would eval (hx-on, trigger filters, js: values)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RoutePattern

from tests.factories import ProjectFactory, UserFactory
from tests.webapp.api.builders import one_of_everything
from webapp.core.models import Membership, Role
from webapp.endpoints.models import EndpointCheck
from webapp.reviews.models import ReviewItem

pytestmark = pytest.mark.django_db
CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?(?P<name>\w+)>")
TRIGGER_FILTER = re.compile(r"^\s*[\w:.-]+\[")  # "click[ctrlKey]"; not "keyup from:input[name=q]" (a selector)


def routes(patterns=None, prefix: str = "", namespace: str = ""):
    """(route with converters, full name) for every RoutePattern in the URLconf, admin aside (Django's own pages)."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if not isinstance(entry.pattern, RoutePattern):
            continue  # regex routes: the admin and DRF's format suffixes (JSON, not pages)
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin" or route.startswith("admin/"):
                continue
            yield from routes(entry.url_patterns, route, entry.namespace or namespace)
        elif isinstance(entry, URLPattern):
            yield route, f"{namespace}:{entry.name}" if namespace else (entry.name or route)


class InlineCode(HTMLParser):
    """Collects every piece of markup a browser (or htmx) would run as code."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and not values.get("src") and values.get("type") not in ("application/json",):
            self.found.append("inline <script>")
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on") or name.startswith(("hx-on", "data-hx-on")):
                self.found.append(f"{tag} {name}=")
            if value.lower().startswith("javascript:"):
                self.found.append(f"{tag} {name}=javascript:")
            if name in ("hx-trigger", "data-hx-trigger") and any(
                    TRIGGER_FILTER.match(part) for part in value.split(",")):
                self.found.append(f"{tag} hx-trigger filter {value!r} (htmx evals it)")
            if name in ("hx-vals", "hx-vars", "data-hx-vals") and value.startswith("js:") or name == "hx-vars":
                self.found.append(f"{tag} {name} evaluated by htmx")


def inline_code(html: str) -> list[str]:
    parser = InlineCode()
    parser.feed(html)
    parser.close()
    return parser.found


def test_inline_code_detector_finds_what_it_must():
    page = ('<script>alert(1)</script><script type="application/json">{}</script><script src="/s.js"></script>'
            '<form onsubmit="x()"><a href="javascript:go()">b</a><div hx-on:click="y()" '
            "hx-trigger=\"click[ctrlKey]\" hx-vals='js:{a: 1}'></div>")
    assert inline_code(page) == ["inline <script>", "form onsubmit=", "a href=javascript:", "div hx-on:click=",
                                 "div hx-trigger filter 'click[ctrlKey]' (htmx evals it)", "div hx-vals evaluated by htmx"]


def test_every_page_has_a_strict_csp_and_no_inline_code(client):
    owner, owner_project = UserFactory(), ProjectFactory(name="Mine")
    Membership.objects.create(project=owner_project, user=owner, role=Role.OWNER)
    objs = one_of_everything(owner_project, "mine")
    item = ReviewItem.objects.create(queue=objs["queue"], position=0, rollout=objs["rollout"])
    check = EndpointCheck.objects.create(endpoint=objs["endpoint"])
    values = {
        "project_id": owner_project.pk, "task_id": objs["task"].pk, "example_id": objs["example"].pk,
        "rubric_id": objs["rubric"].pk, "version_id": objs["version"].pk, "number": objs["version"].number,
        "endpoint_id": objs["endpoint"].pk, "check_id": check.pk, "rollout_id": objs["rollout"].pk,
        "queue_id": objs["queue"].pk, "item_id": item.pk, "run_id": objs["run"].pk, "export_id": objs["export"].pk,
        "user_id": owner.pk, "job_id": objs["judge_job"].pk, "checkpoint_id": objs["checkpoint"].pk,
        "group_key": objs["rollout"].group_key, "key": "correct", "format": "json",
    }
    client.force_login(owner)
    pages, problems = [], []
    for route, name in routes():
        missing = [m["name"] for m in CONVERTER.finditer(route) if m["name"] not in values]
        if missing:
            problems.append(f"{name}: no seeded value for {missing}: add one to `values`")
            continue
        url = "/" + CONVERTER.sub(lambda m: str(values[m["name"]]), route)
        response = client.get(url)
        if response.status_code >= 500:
            problems.append(f"{name} {url}: {response.status_code}")
            continue
        policy = response.get("Content-Security-Policy", "")
        script_src = re.search(r"script-src ([^;]*)", policy)
        if not script_src or script_src[1].split() != ["'self'"] or "default-src 'self'" not in policy:
            problems.append(f"{name} {url}: CSP header {policy!r}")
        if response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
            pages.append(name)
            for finding in inline_code(response.content.decode()):
                problems.append(f"{name} {url}: {finding}")
    assert not problems, "\n".join(problems)
    # the walk renders the pages, not only their error answers
    assert len(pages) >= 40 and {"core:dashboard", "tasks:detail", "endpoints:edit", "api-docs"} <= set(pages), pages
