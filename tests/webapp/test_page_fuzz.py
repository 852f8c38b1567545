"""No input makes a page answer 5xx (issue 15 item 4).

Every page of the URL resolver (the API has its own schemathesis test) is requested as the project's owner, with
its path filled with ids of seeded objects, by GET and by POST, with Hypothesis-chosen hostile values ('²', NaN,
inf, -1, 10**30, '', NUL, a lone surrogate, deeply nested JSON, a huge string) in the query and form parameters the
views read. The parameter names are read from the views' source, so a new page or parameter is fuzzed too.
"""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from django.db import transaction
from django.urls import URLPattern, URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import ProjectFactory, UserFactory
from tests.webapp.api.builders import one_of_everything
from webapp.core.models import Membership, Role

pytestmark = pytest.mark.django_db

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
SKIPPED_PREFIXES = ("api/", "admin/", "logout/")  # the API: test_schema_fuzz.py; logout ends the session

# Raw bytes, percent-encoded as a client would send them: a lone surrogate cannot be UTF-8, so it arrives as the
# bytes of its UTF-8-style encoding; NUL arrives as %00.
HOSTILE: list[bytes] = [
    "²".encode(), "٣".encode(), b"NaN", b"nan", b"inf", b"-inf", b"-1", b"0", b"1e400", b"10" * 15,
    str(10**30).encode(), b"", b" ", b"\x00", b"a\x00b", b"\xed\xa0\x80", b"\xff\xfe", b"1.5", b"true", b"null",
    b"[" * 5000, b'{"a":' * 2000 + b"1" + b"}" * 2000, b"x" * 100_000, b"<script>", b"../../etc/passwd",
    b"{{ 7 * 7 }}", b"%", b"1,2", b'{"task": "abc"}', b"[1, 2]", b'{"a": "\\ud800"}', b'{"a": "\\u0000"}',
    b'{"criteria": [{"key": "k", "title": "\\ud800", "kind": "format", "check": "boxed"}]}',
]

# Names read with an f-string or built by a form's prefix: not found by the pattern below.
EXTRA_PARAMS = [
    "criteria.0.weight", "criteria.0.title", "criteria.0.key", "criteria.0.kind", "criteria.0.question",
    "criteria.0.choices.0.label", "criteria.0.scale.min", "gates.0.criterion", "gates.0.below", "op",
    "number-correct", "choice-correct", "row_version-correct", "number-polite", "choice-polite", "checklist_1",
    "col_0", "col_1", "a_version", "b_version", "a_fp", "b_fp", "selection", "spec", "spec_json",
]

_READ = re.compile(r"""(?:GET|POST|data|query_params|params)\.(?:get|getlist|pop)\(\s*["']([\w.\-]+)["']""")
_FIELD = re.compile(r"^\s+(\w+)\s*=\s*(?:forms\.|\w+Field\()", re.MULTILINE)


def _names_in(text: str, *, form_fields: bool = False) -> set[str]:
    names = set(_READ.findall(text))
    if form_fields:
        names.update(_FIELD.findall(text))
    return names


def param_names(module_file: str | None = None) -> list[str]:
    """Parameter names the views read: of one view module and its app's forms, or of the whole app."""
    names: set[str] = set(EXTRA_PARAMS)
    files = [Path(module_file)] if module_file else [p for p in WEBAPP.rglob("*.py") if "migrations" not in p.parts]
    if module_file:
        files += [p for p in Path(module_file).parent.glob("*.py") if p.name in ("forms.py", "selectors.py")]
        files += [WEBAPP / "core" / "pagination.py"]
    for path in files:
        names |= _names_in(path.read_text(), form_fields=path.name == "forms.py")
    return sorted(names)


def _walk(patterns, prefix: str = "", namespace: str | None = None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), namespace, pattern.name


def page_routes() -> list[tuple[str, str | None, str | None, str]]:
    """(route, namespace, name, file of the view) of every page outside the API."""
    routes = []
    for route, namespace, name in _walk(get_resolver().url_patterns):
        if route.startswith(SKIPPED_PREFIXES):
            continue
        callback = get_resolver().resolve("/" + re.sub(r"<(?:\w+:)?\w+>", "1", route)).func
        callback = getattr(callback, "view_class", callback)
        routes.append((route, namespace, name, inspect.getsourcefile(inspect.unwrap(callback))))
    return routes


@pytest.fixture
def world(client):
    from webapp.endpoints.models import EndpointCheck
    from webapp.reviews.models import ReviewItem
    from webapp.rubrics.models import RubricToolJob

    project = ProjectFactory()
    owner = UserFactory()
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    objects = one_of_everything(project, "fuzz")
    Membership.objects.create(project=project, user=objects["annotator"], role=Role.ANNOTATOR)
    item = ReviewItem.objects.create(queue=objects["queue"], position=0, rollout=objects["rollout"])
    check = EndpointCheck.objects.create(endpoint=objects["endpoint"])
    tool_jobs = {kind: RubricToolJob.objects.create(project=project, kind=kind, rubric_version=objects["version"],
                                                    task=objects["task"])
                 for kind in RubricToolJob.Kind.values}
    client.force_login(owner)
    # (namespace or None, url kwarg) -> value; a kwarg missing here fails the test, so a new page gets an entry.
    values = {
        (None, "project_id"): project.pk, (None, "task_id"): objects["task"].pk,
        (None, "example_id"): objects["example"].pk, (None, "rubric_id"): objects["rubric"].pk,
        (None, "version_id"): objects["version"].pk, (None, "number"): objects["version"].number,
        (None, "endpoint_id"): objects["endpoint"].pk, (None, "check_id"): check.pk,
        (None, "rollout_id"): objects["rollout"].pk, (None, "group_key"): objects["rollout"].group_key,
        (None, "queue_id"): objects["queue"].pk, (None, "item_id"): item.pk, (None, "key"): "correct",
        (None, "run_id"): objects["run"].pk, (None, "export_id"): objects["export"].pk,
        (None, "user_id"): objects["annotator"].pk,
        ("rollouts", "job_id"): objects["job"].pk, ("judging", "job_id"): objects["judge_job"].pk,
    }
    rubric_jobs = {"preview_job": "preview", "draft_job": "draft", "draft_accept": "draft", "dryrun_job": "dry_run"}
    for name, kind in rubric_jobs.items():
        values[(f"rubrics:{name}", "job_id")] = tool_jobs[kind].pk
    return values


def fill(route: str, namespace: str | None, name: str | None, values: dict) -> str:
    def one(match: re.Match) -> str:
        kwarg = match.group(2)
        for key in ((f"{namespace}:{name}", kwarg), (namespace, kwarg), (None, kwarg)):
            if key in values:
                return str(values[key])
        raise AssertionError(f"no seeded value for <{kwarg}> in {namespace}:{name} ({route}); add one to `world`")

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", one, route)


def encode(params: list[tuple[str, bytes]]) -> str:
    return "&".join(f"{quote_from_bytes(k.encode())}={quote_from_bytes(v)}" for k, v in params)


def test_parameter_names_are_found():
    names = param_names()
    for expected in ("after", "version", "labels", "pairs", "runs", "step", "task", "from", "a", "b", "check"):
        assert expected in names, expected


# Every parameter of a page at once with one of these: what a view parses first cannot hide the rest for long,
# and each value is tried against every parameter of every page.
SWEEP: list[bytes] = ["²".encode(), b"NaN", str(10**30).encode(), b"a\x00b\xed\xa0\x80", b"[" * 5000,
                      b'{"criteria": [{"key": "k", "title": "\\ud800", "kind": "format", "check": "boxed"}]}']


def test_no_page_answers_5xx_to_hostile_parameters(client, world):
    routes = page_routes()
    assert len(routes) > 80, len(routes)
    pages = [(fill(route, ns, name, world), f"{ns}:{name}", param_names(source)) for route, ns, name, source in routes]
    failures: list[str] = []
    statuses: dict[int, int] = {}
    started = time.monotonic()
    client.raise_request_exception = False  # a view's exception becomes the 500 response it would be in production

    def send(url: str, label: str, method: str, params: list[tuple[str, bytes]], htmx: bool = False) -> int:
        body = encode(params)
        headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
        # Each request in a savepoint that is rolled back: a hostile POST must not delete what the next one needs.
        with transaction.atomic():
            if method == "GET":
                response = client.get(f"{url}?{body}", **headers)
            else:
                response = client.generic("POST", url, body, content_type="application/x-www-form-urlencoded",
                                          **headers)
            transaction.set_rollback(True)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {method} {url}?{body[:300]} ({label})")
        return response.status_code

    @given(params=st.data(), htmx=st.booleans())
    @settings(max_examples=2, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def mixed(url: str, label: str, method: str, names: list[str], params, htmx: bool) -> None:
        chosen = params.draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(HOSTILE)), min_size=1,
                                      max_size=6))
        send(url, label, method, chosen, htmx)

    for url, label, names in pages:
        for method in ("GET", "POST"):
            if send(url, label, method, []) == 405:
                continue
            for value in SWEEP:
                send(url, label, method, [(name, value) for name in names])
            mixed(url=url, label=label, method=method, names=names)
    elapsed = time.monotonic() - started
    assert not failures, f"{len(set(failures))} requests answered 5xx:\n" + "\n".join(sorted(set(failures))[:80])
    requests = sum(statuses.values())
    print(f"{len(pages)} pages, {requests} requests in {elapsed:.1f} s, statuses {sorted(statuses.items())}")
    # The requests reach the views: pages answer, not only with errors.
    assert statuses.get(200, 0) > requests // 5, statuses
