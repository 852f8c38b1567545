"""Ids and numbers from requests: one parser, a 400 naming the field, never a 500 (issue 15 item 4)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ProjectFactory, UserFactory
from tests.webapp.api.builders import one_of_everything
from webapp.core.errors import ApplicationError
from webapp.core.models import Membership, Role
from webapp.core.params import MAX_ID, parse_float, parse_id, parse_ids, parse_int


@pytest.mark.parametrize("value", ["²", "٣", "1.5", "-1", "0", "abc", "1e3", str(MAX_ID + 1), "10" * 15, "\x00",
                                   "\ud800", "NaN", [1], True, 2.0])
def test_parse_id_refuses_what_is_not_a_database_id(value):
    with pytest.raises(ApplicationError) as error:
        parse_id(value, field="after")
    assert error.value.status == 400 and error.value.field == "after" and error.value.message.startswith("after:")


def test_parse_id_and_numbers_accept_plain_values():
    assert parse_id(" 42 ", field="x") == 42 and parse_id("", field="x") is None and parse_id(None, field="x") is None
    assert parse_ids(["1", "", "3"], field="runs") == [1, 3]
    assert parse_int("-5", field="x") == -5 and parse_int("", field="x", default=7) == 7
    assert parse_float("0.25", field="x") == 0.25 and parse_float(3, field="x") == 3.0


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity", "1e400", "²", "0x10", "1_000"])
def test_parse_float_refuses_non_finite_and_odd_numbers(value):
    with pytest.raises(ApplicationError):
        parse_float(value, field="score_min")


def test_parse_numbers_check_their_range():
    with pytest.raises(ApplicationError, match=r"pairs: 0 is out of range \(1\.\.10\)"):
        parse_int("0", field="pairs", minimum=1, maximum=10)
    with pytest.raises(ApplicationError, match=r"out of range \(0\.\.1\)"):
        parse_float("1.5", field="score", minimum=0, maximum=1)


@pytest.mark.django_db
def test_pages_named_in_the_issue_answer_4xx_to_a_superscript_two(client):
    project = ProjectFactory()
    owner = UserFactory()
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    o = one_of_everything(project, "sq")
    client.force_login(owner)
    p, two = project.pk, "²"
    gets = [
        (reverse("rubrics:diff", args=[p, o["rubric"].pk]), {"a": two}),
        (reverse("rubrics:edit", args=[p, o["rubric"].pk]), {"from": two}),
        (reverse("rubrics:create", args=[p]), {"task": two}),
        (reverse("rubrics:preview_spec", args=[p]), {"task": two}),
        (reverse("runs:compare", args=[p]), {"runs": two}),
        (reverse("runs:detail", args=[p, o["run"].pk]), {"step": two}),
        (reverse("reviews:next", args=[p, o["queue"].pk]), {"after": two}),
        (reverse("reviews:agreement", args=[p]), {"version": two}),
        (reverse("reviews:align", args=[p]), {"labels": two}),
    ]
    for url, params in gets:
        response = client.get(url, params)
        assert 400 <= response.status_code < 500 or response.status_code in (200, 302), (url, response.status_code)
    response = client.post(reverse("reviews:position_check", args=[p]),
                           {"version": o["version"].pk, "endpoint": o["endpoint"].pk, "pairs": two})
    assert response.status_code == 400 and "pairs" in response.content.decode()
    response = client.post(reverse("rubrics:validate", args=[p]),
                           {"name": "r", "criteria.0.key": "k", "criteria.0.title": "t", "criteria.0.kind": "format",
                            "criteria.0.check": "boxed", "criteria.0.weight": "NaN"})
    assert response.status_code < 500
