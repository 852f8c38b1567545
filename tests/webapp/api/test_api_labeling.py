"""The labeling additions through the API (issue 19): queue guidelines, gold responses and rankings, on the same
services as the labeling page (webapp/reviews/labeling.py), with the house's roles, 409 on a stale edit and
validation errors at their field."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from tests.factories import RubricVersionFactory, UserFactory
from tests.webapp.reviews.conftest import SPEC, build_review_setup
from webapp.core.models import Membership, Role
from webapp.exports.models import Export
from webapp.exports.services import export_write
from webapp.reviews.models import AssignmentStatus, GoldResponse, RankingLabel, ReviewAssignment, ReviewItem

pytestmark = pytest.mark.django_db
ROLES = [Role.OWNER, Role.EDITOR, Role.ANNOTATOR, Role.VIEWER]


@pytest.fixture
def setup(make_member):
    s = build_review_setup(make_member)
    s["clients"] = {}
    for role in ROLES:
        user = UserFactory(username=f"api-{role}")
        Membership.objects.create(project=s["project"], user=user, role=role)
        client = APIClient()
        client.force_authenticate(user)
        s["clients"][role] = client
        s[role] = user
    return s


def url(s, resource: str, pk: int | None = None, action: str = "") -> str:
    tail = f"{pk}/" if pk else ""
    return f"/api/v1/projects/{s['project'].pk}/{resource}/{tail}{f'{action}/' if action else ''}"


def make_queue(s, **body) -> dict:
    body = {"name": "api queue", "rubric_version": s["version"].pk, "size": 12, "blind": False, **body}
    created = s["clients"][Role.EDITOR].post(url(s, "review-queues"), body, format="json")
    assert created.status_code == 201, created.content
    return created.json()


def take(s, role, queue) -> dict:
    response = s["clients"][role].post(url(s, "review-queues", queue["id"], "next"))
    assert response.status_code == 200, response.content
    return response.json()


def export_rows(s, kind: str, filters: dict) -> list[dict]:
    created = s["clients"][Role.EDITOR].post(url(s, "exports"), {"kind": kind, "format": "jsonl", "filters": filters},
                                             format="json")
    assert created.status_code == 201, created.content
    export = export_write(export_id=created.json()["id"])
    assert export.status == "succeeded", export.error
    export = Export.objects.get(pk=export.pk)
    return [json.loads(line) for line in export.file.open("rb").read().decode().splitlines() if line.strip()]


def test_guidelines_read_by_every_member_written_by_editors_and_inherited_by_new_queues(setup):
    s = setup
    queue = make_queue(s)
    assert queue["guidelines"] == ""
    path = url(s, "review-queues", queue["id"], "guidelines")
    assert s["clients"][Role.VIEWER].get(path).json() == {
        "guidelines": "", "guidelines_html": "", "rubric_version": None, "outdated": False, "updated_at": None,
        "updated_by": None}
    text = "## Be strict\n\n- **wrong** = *no*\n\n<script>alert('g')</script>"
    for role in ROLES:
        response = s["clients"][role].put(path, {"guidelines": f"{text} by {role}"}, format="json")
        assert response.status_code == (200 if role in (Role.OWNER, Role.EDITOR) else 403), (role, response.content)
    for role in ROLES:
        read = s["clients"][role].get(path)
        assert read.status_code == 200
        body = read.json()
        assert body["guidelines"] == f"{text} by {Role.EDITOR}" and body["updated_by"] == s[Role.EDITOR].username
        assert "<strong>wrong</strong>" in body["guidelines_html"] and "<script>" not in body["guidelines_html"]
        assert body["rubric_version"] == s["version"].pk and body["outdated"] is False
    # The service's refusal answers at its field.
    refused = s["clients"][Role.OWNER].put(path, {"guidelines": "x" * 50_001}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "guidelines"
    # A queue of the rubric's next version starts from the newest guidelines, marked as written for the older one.
    v2 = RubricVersionFactory(rubric=s["version"].rubric, number=2, spec=SPEC)
    second = make_queue(s, name="v2 queue", rubric_version=v2.pk)
    assert second["guidelines"] == f"{text} by {Role.EDITOR}" and second["guidelines_rubric_version"] == s["version"].pk
    assert s["clients"][Role.VIEWER].get(url(s, "review-queues", second["id"], "guidelines")).json()["outdated"]
    # Given ones win over the inherited ones.
    third = make_queue(s, name="own guidelines", guidelines="Only *these*.")
    assert third["guidelines"] == "Only *these*." and third["guidelines_rubric_version"] == s["version"].pk


def test_gold_responses_need_a_turn_on_the_item_and_a_fresh_row_version_and_export_as_sft(setup):
    s = setup
    queue = make_queue(s)
    gold_url = url(s, "gold-responses")
    item = ReviewItem.objects.filter(queue_id=queue["id"]).order_by("position").first()
    # A turn on the item first, as on the labeling page.
    refused = s["clients"][Role.ANNOTATOR].post(gold_url, {"item": item.pk, "text": "x"}, format="json")
    assert refused.status_code == 403 and "not reserved for you" in refused.json()["detail"]
    assert s["clients"][Role.VIEWER].post(url(s, "review-queues", queue["id"], "next")).status_code == 403
    taken = {role: take(s, role, queue) for role in (Role.OWNER, Role.EDITOR, Role.ANNOTATOR)}
    assert "priority" not in taken[Role.ANNOTATOR]
    ids = {}
    for role, held in taken.items():
        response = s["clients"][role].post(gold_url, {"item": held["id"], "text": f"<answer>{role}</answer>"},
                                           format="json")
        assert response.status_code == 201, (role, response.content)
        assert response.json()["row_version"] == 1 and response.json()["rollout"] == held["rollout"]
        ids[role] = response.json()["id"]
    viewer = s["clients"][Role.VIEWER]
    assert viewer.post(gold_url, {"item": taken[Role.ANNOTATOR]["id"], "text": "v"}, format="json").status_code == 403
    assert viewer.get(gold_url).status_code == 200 and len(viewer.get(gold_url).json()["results"]) == 3
    # A rollout the item does not show, and an item of another project's queue, are refused.
    other = next(r for r in s["rollouts"] if r.pk != taken[Role.ANNOTATOR]["rollout"])
    annotator = s["clients"][Role.ANNOTATOR]
    assert annotator.post(gold_url, {"item": taken[Role.ANNOTATOR]["id"], "rollout": other.pk, "text": "x"},
                          format="json").status_code == 404
    assert annotator.post(gold_url, {"item": 10**12, "text": "x"}, format="json").json()["field"] == "item"
    # Edits carry the row_version read; a stale one is 409 with the saved text, nothing overwritten.
    mine = url(s, "gold-responses", ids[Role.ANNOTATOR])
    ok = annotator.patch(mine, {"row_version": 1, "text": "better"}, format="json")
    assert ok.status_code == 200 and ok.json()["row_version"] == 2
    stale = annotator.patch(mine, {"row_version": 1, "text": "stale tab"}, format="json")
    assert stale.status_code == 409 and stale.json()["current"] == {"text": "better", "row_version": 2}
    assert GoldResponse.objects.get(pk=ids[Role.ANNOTATOR]).text == "better"
    # A second create of another text for the same rollout is the same conflict.
    again = annotator.post(gold_url, {"item": taken[Role.ANNOTATOR]["id"], "text": "other"}, format="json")
    assert again.status_code == 409 and again.json()["current"]["text"] == "better"
    # Another annotator's gold response cannot be changed.
    assert s["clients"][Role.EDITOR].patch(mine, {"row_version": 2, "text": "hijack"},
                                           format="json").status_code == 403
    rows = export_rows(s, "sft", {"sft_source": "gold"})
    assert sorted(r["messages"][-1]["content"] for r in rows) == sorted(
        ["better", f"<answer>{Role.OWNER}</answer>", f"<answer>{Role.EDITOR}</answer>"])
    # Emptied: deleted.
    assert annotator.patch(mine, {"row_version": 2, "text": ""}, format="json").status_code == 204
    assert not GoldResponse.objects.filter(pk=ids[Role.ANNOTATOR]).exists()


def test_rankings_validate_at_the_ranking_field_conflict_when_stale_and_export_every_pair(setup):
    s = setup
    queue = make_queue(s, mode="ranking")
    annotator = s["clients"][Role.ANNOTATOR]
    held = take(s, Role.ANNOTATOR, queue)
    group = held["group_rollout_ids"]
    assert len(group) == 3
    listed = s["clients"][Role.VIEWER].get(url(s, "review-items"), {"queue": queue["id"]}).json()["results"]
    assert sorted(i["id"] for i in listed) == sorted(ReviewItem.objects.filter(queue_id=queue["id"])
                                                     .values_list("pk", flat=True))
    ranking_url = url(s, "ranking-labels")
    other_group_rollout = next(r.pk for r in s["rollouts"] if r.pk not in group)
    for bad, field in (([group[0], group[1]], "ranking"), ([group[0], group[0], group[1]], "ranking"),
                       ([group[0], group[1], other_group_rollout], "ranking"), ([group[0]], "ranking"),
                       ("first", "ranking"), ([group[0], "x", group[1]], "ranking")):
        response = annotator.post(ranking_url, {"item": held["id"], "ranking": bad}, format="json")
        assert response.status_code == 400, (bad, response.content)
        body = response.json()
        assert body.get("field") == field or field in body, (bad, body)
    assert not RankingLabel.objects.exists()
    assert s["clients"][Role.VIEWER].post(ranking_url, {"item": held["id"], "ranking": group},
                                          format="json").status_code == 403
    ranking = [group[2], group[0], group[1]]
    created = annotator.post(ranking_url, {"item": held["id"], "ranking": ranking, "comment": "c"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["ranking"] == ranking and created.json()["row_version"] == 1
    assignment = ReviewAssignment.objects.get(item_id=held["id"], annotator=s[Role.ANNOTATOR])
    assert assignment.status == AssignmentStatus.DONE and ReviewItem.objects.get(pk=held["id"]).completed_count == 1
    # The same ranking again is no conflict; another one without the row_version read is.
    assert annotator.post(ranking_url, {"item": held["id"], "ranking": ranking, "comment": "c"},
                          format="json").status_code == 201
    assert annotator.post(ranking_url, {"item": held["id"], "ranking": group}, format="json").status_code == 409
    label = url(s, "ranking-labels", created.json()["id"])
    changed = annotator.patch(label, {"row_version": 1, "ranking": group}, format="json")
    assert changed.status_code == 200 and changed.json()["row_version"] == 2
    stale = annotator.patch(label, {"row_version": 1, "ranking": ranking}, format="json")
    assert stale.status_code == 409 and stale.json()["current"]["ranking"] == group
    assert s["clients"][Role.OWNER].patch(label, {"row_version": 2, "ranking": ranking},
                                          format="json").status_code == 403
    # Every role that labels can rank; a criteria queue's item is not a ranking.
    for role in (Role.OWNER, Role.EDITOR):
        mine = take(s, role, queue)
        response = s["clients"][role].post(ranking_url, {"item": mine["id"], "ranking": mine["group_rollout_ids"]},
                                           format="json")
        assert response.status_code == 201, (role, response.content)
    criteria = make_queue(s, name="criteria")
    plain = take(s, Role.ANNOTATOR, criteria)
    refused = annotator.post(ranking_url, {"item": plain["id"], "ranking": group}, format="json")
    assert refused.status_code == 400 and refused.json()["field"] == "item"
    rows = export_rows(s, "preferences", {"rubric_version": s["version"].pk, "preference_source": "ranking"})
    mine = [(r["chosen_rollout_id"], r["rejected_rollout_id"]) for r in rows if r["chosen_rollout_id"] in group]
    assert mine == [(group[0], group[1]), (group[0], group[2]), (group[1], group[2])]
