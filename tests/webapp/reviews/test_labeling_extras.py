"""Labeling the way annotators expect (issue 19, Build): guidelines per queue, gold responses exported as SFT data,
ranking a group exported as every implied preference pair, per-annotator progress and agreement on the queue page."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from webapp.exports.services import export_create, export_write
from webapp.reviews import services
from webapp.reviews.models import GoldResponse, HumanLabel, RankingLabel, ReviewItem, ReviewMode

pytestmark = pytest.mark.django_db


def _rows(export) -> list[dict]:
    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    return [json.loads(line) for line in export.file.open("rb").read().decode().splitlines() if line.strip()]


def _queue(setup, **kw):
    kw.setdefault("name", "q")
    return services.review_queue_create(project=setup["project"], rubric_version=setup["version"], size=12,
                                        created_by=setup["editor"], **kw)


def _take(client, setup, queue, user):
    client.force_login(user)
    response = client.get(reverse("reviews:next", args=[setup["project"].pk, queue.pk]))
    assert response.status_code == 302, response.status_code
    return response["Location"], ReviewItem.objects.get(pk=int(response["Location"].rstrip("/").split("/")[-1]))


def test_ranking_queue_ranks_a_group_and_exports_every_implied_pair(client, review_setup):
    s = review_setup
    queue = _queue(s, mode=ReviewMode.RANKING, blind=False)
    items = list(queue.items.order_by("position"))
    assert len(items) == 4 and all(len(i.group_rollout_ids) == 3 for i in items)  # one item per group of 3
    url, item = _take(client, s, queue, s["ann1"])
    page = client.get(url).content.decode()
    assert page.count('name="rank-') == 3 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    ranking_url = reverse("reviews:ranking", args=[s["project"].pk, queue.pk, item.pk])
    g = item.group_rollout_ids
    # The same rank twice is refused and nothing is stored.
    client.post(ranking_url, {f"rank-{g[0]}": 1, f"rank-{g[1]}": 1, f"rank-{g[2]}": 2})
    assert not RankingLabel.objects.exists()
    response = client.post(ranking_url, {f"rank-{g[0]}": 2, f"rank-{g[1]}": 3, f"rank-{g[2]}": 1})
    assert response.status_code == 302
    label = RankingLabel.objects.get()
    assert label.ranking == [g[2], g[0], g[1]]
    item.refresh_from_db()
    assert item.completed_count == 1
    export = export_write(export_id=export_create(
        project=s["project"], kind="preferences", format="jsonl", enqueue=False,
        filters={"rubric_version": s["version"].pk, "preference_source": "ranking"}).pk)
    rows = _rows(export)
    assert [(r["chosen_rollout_id"], r["rejected_rollout_id"]) for r in rows] == [(g[2], g[0]), (g[2], g[1]),
                                                                                  (g[0], g[1])]
    assert rows[0]["preference_source"] == "ranking" and rows[0]["chosen"][-1]["role"] == "assistant"


def test_gold_response_saved_versioned_and_exported_as_sft(client, review_setup):
    s = review_setup
    queue = _queue(s)
    url, item = _take(client, s, queue, s["ann1"])
    page = client.get(url).content.decode()
    assert "Corrected (gold) response" in page
    gold_url = reverse("reviews:gold", args=[s["project"].pk, queue.pk, item.pk])
    headers = {"HX-Request": "true"}
    panel = client.get(gold_url, headers=headers).content.decode()  # loaded when the panel is opened
    assert 'name="gold"' in panel and "&lt;script&gt;alert(1)&lt;/script&gt;" in panel  # starts from the completion
    response = client.post(gold_url, {"gold": "<answer>42</answer> <script>x</script>", "gold_row_version": 0},
                           headers=headers)
    assert response.status_code == 200 and "Saved · v1" in response.content.decode()
    assert "<script>x</script>" not in response.content.decode()
    gold = GoldResponse.objects.get()
    assert gold.rollout_id == item.rollout_id and gold.annotator == s["ann1"]
    assert client.post(gold_url, {"gold": "better", "gold_row_version": 1}, headers=headers).status_code == 200
    stale = client.post(gold_url, {"gold": "stale tab", "gold_row_version": 1}, headers=headers)
    assert stale.status_code == 409 and "better" in stale.content.decode()
    gold.refresh_from_db()
    assert (gold.text, gold.row_version) == ("better", 2)
    # Not the annotator's item: refused.
    client.force_login(s["ann2"])
    assert client.post(gold_url, {"gold": "mine", "gold_row_version": 0}).status_code == 403
    export = export_write(export_id=export_create(project=s["project"], kind="sft", format="jsonl", enqueue=False,
                                                filters={"sft_source": "gold"}).pk)
    rows = _rows(export)
    assert len(rows) == 1 and rows[0]["rollout_id"] == item.rollout_id
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "better"}
    # Emptied and saved: deleted.
    client.force_login(s["ann1"])
    client.post(gold_url, {"gold": "", "gold_row_version": 2}, headers=headers)
    assert not GoldResponse.objects.exists()


def test_guidelines_are_markdown_rendered_safely_edited_by_editors_and_follow_the_rubric(client, review_setup):
    s = review_setup
    queue = _queue(s)
    guidelines_url = reverse("reviews:guidelines", args=[s["project"].pk, queue.pk])
    client.force_login(s["ann1"])
    assert client.post(guidelines_url, {"guidelines": "hijack"}).status_code == 403
    client.force_login(s["editor"])
    # Text Postgres cannot hold is refused with the reason, not a 500.
    refused = client.post(guidelines_url, {"guidelines": "a\x00b"}, follow=True)
    assert refused.status_code == 200 and "NUL character" in refused.content.decode()
    text = "## Be strict\n\n- **wrong answer** = *no*\n\n<script>alert('g')</script> <img src=x onerror=alert(1)>"
    assert client.post(guidelines_url, {"guidelines": text}).status_code == 302
    queue.refresh_from_db()
    assert queue.guidelines.startswith("## Be strict") and queue.guidelines_rubric_version == s["version"]
    url, _ = _take(client, s, queue, s["ann1"])
    page = client.get(url).content.decode()
    assert "<strong>wrong answer</strong>" in page and 'id="guidelines"' in page
    assert "<script>alert(" not in page and "<img" not in page, page[page.find('id="guidelines"'):][:800]
    # A new queue of the same rubric starts from them.
    second = _queue(s, name="second", seed=1)
    assert second.guidelines == queue.guidelines


def test_queue_page_shows_progress_and_agreement_per_annotator(client, review_setup):
    s = review_setup
    queue = _queue(s, reviewers_per_item=2, blind=False, assignees=[s["ann1"], s["ann2"], s["editor"]])
    items = list(queue.items.order_by("position")[:4])
    for user, flip in ((s["ann1"], False), (s["ann2"], True)):
        for item in items:
            judge = {sc.criterion_key: sc.score for sc in item.rollout.criterion_scores.all()}
            for key, score in judge.items():
                value = (1.0 - score) if flip and key == "correct" else score
                HumanLabel.objects.create(rollout=item.rollout, rubric_version=s["version"], criterion_key=key,
                                          annotator=user, queue=queue, value=value)
    client.force_login(s["editor"])
    page = client.get(reverse("reviews:detail", args=[s["project"].pk, queue.pk])).content.decode()
    assert "Agreement with judge" in page and "Between annotators" in page
    # ann1 matches the judge everywhere (8 labels), ann2 on half; the editor is assigned and has not started.
    assert "100% <span class=\"muted small\">n = 8</span>" in page
    assert "50% <span class=\"muted small\">n = 8</span>" in page
    assert s["editor"].username in page and page.count("assigned</span>") == 3
    # A blind annotator sees progress but no agreement, with the judge or between annotators (others' labels).
    blind = _queue(s, name="blind", blind=True)
    assert blind.items.exists()
    client.force_login(s["ann2"])
    page = client.get(reverse("reviews:detail", args=[s["project"].pk, queue.pk])).content.decode()
    assert "100% <span" not in page and "Agreement with judge" in page
    assert "Between annotators" not in page and "Krippendorff" not in page
