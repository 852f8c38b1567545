"""Blind review holds on every read path: every URL pattern of the site and every API route, requested by an
annotator with open blind items, with every query parameter that could act as an oracle, never shows a judge score
or rationale of a blind rollout, nor another annotator's label, ranking or gold response of it, and no filter tells
a blind rollout's score apart. A rollout is blind as an item's rollout, as rollout B of a pair, and as one of the
group a ranking item shows.

The URL patterns are walked from the resolver, so a page or endpoint added later is requested here without anyone
remembering to: a pattern whose arguments this test cannot fill fails `test_every_url_pattern_is_requested`.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from tests.factories import RolloutFactory, UserFactory
from tests.webapp.api.builders import one_of_everything
from webapp.core.models import JobStatus, Membership, Role
from webapp.exports import services as export_services
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import (
    AssignmentStatus,
    GoldResponse,
    HumanLabel,
    PairwiseLabel,
    RankingLabel,
    ReviewAssignment,
    ReviewItem,
    ReviewQueue,
)
from webapp.rollouts.models import RolloutSource
from webapp.rubrics.models import RubricToolJob
from webapp.runs.models import TrainingMetric

SECRET_SCORE = 0.7315
# The score as JSON, floatformat:3 and floatformat:2 write it, the judge's words, and what other annotators wrote
# about the blind rollouts (their labels would sway this annotator's as much as the judge's scores).
OTHERS = ("SECRET-OTHER-LABEL-xyz", "SECRET-OTHER-GOLD-xyz", "SECRET-OTHER-RANKING-xyz", "SECRET-OTHER-PAIR-xyz")
SECRETS = ("SECRET-RATIONALE-xyz", "SECRET-RAW-xyz", "0.7315", "0.732", "0.73", *OTHERS)
MARK_R, MARK_T, MARK_V = "MARKER-BLIND-R", "MARKER-BLIND-T", "MARKER-VISIBLE-V"
MARK_G = "MARKER-BLIND-G"  # blind only as a member of a ranking item's group

# Namespaces not requested, and why.
SKIPPED_NAMESPACES = {"admin": "Django admin: staff only (annotators are sent to its login page)"}
# Writes not sent as POST, and why: they are the annotator's own labeling, whose reveal-after-submit is by design
# (tests/webapp/reviews/test_views.py), and logout, which would end the session of the requests that follow.
NOT_POSTED = {"reviews:autosave", "reviews:note", "reviews:submit", "reviews:skip", "reviews:pairwise", "logout"}


@pytest.fixture
def blind_world(db):
    owner = UserFactory(username="blind-owner")
    objs = one_of_everything(_project(owner), "blind")
    project, version, task = objs["project"], objs["version"], objs["task"]
    annotator = UserFactory(username="blind-annotator")
    other = UserFactory(username="other-annotator")
    for user in (annotator, other):
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)

    def scored(rollout, score, rationale, fingerprint="judge-fp", comment=""):
        CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                      judge_fingerprint=fingerprint, job=objs["judge_job"], raw_choice="yes",
                                      score=score, rationale=rationale, raw_response=rationale.replace(
                                          "RATIONALE", "RAW"))
        RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint=fingerprint,
                                    job=objs["judge_job"], total=score)
        # Another annotator's label far from the judge: `agreement=disagree` would pick it.
        return HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                         annotator=other, value=0.0, comment=comment)

    secret = RolloutFactory(project=project, task=task, example=objs["example"], job=objs["job"],
                            completion=f"{MARK_R} the answer", group_key="g-secret", sample_index=1)
    others_label = scored(secret, SECRET_SCORE, "SECRET-RATIONALE-xyz", comment="SECRET-OTHER-LABEL-xyz")
    training = RolloutFactory(project=project, task=task, example=objs["example"], job=None, run=objs["run"], step=1,
                              source=RolloutSource.TRAINING, completion=f"{MARK_T} trained", group_key="g-train",
                              metadata={"reward_total": SECRET_SCORE, "turns": 1})
    scored(training, SECRET_SCORE, "SECRET-RATIONALE-xyz (training)", fingerprint="training-reward")
    TrainingMetric.objects.create(run=objs["run"], step=2, metrics={"reward": SECRET_SCORE})
    visible = RolloutFactory(project=project, task=task, example=objs["example"], job=objs["job"],
                             completion=f"{MARK_V} plain", group_key="g-visible", sample_index=2)
    scored(visible, 0.25, "visible rationale")
    grouped = RolloutFactory(project=project, task=task, example=objs["example"], job=objs["job"],
                             completion=f"{MARK_G} ranked", group_key="g-ranked", sample_index=3)
    scored(grouped, SECRET_SCORE, "SECRET-RATIONALE-xyz (ranked)")

    queue = ReviewQueue.objects.create(project=project, name="blind queue", rubric_version=version, blind=True)
    item = ReviewItem.objects.create(queue=queue, position=0, rollout=secret, priority=SECRET_SCORE)
    ReviewItem.objects.create(queue=queue, position=1, rollout=training, priority=SECRET_SCORE)
    ReviewAssignment.objects.create(item=item, annotator=annotator, status=AssignmentStatus.RESERVED,
                                    reserved_until=timezone.now() + timedelta(hours=1))
    # A second blind queue where the annotator already submitted the secret rollout: its reveal must wait for the
    # first queue.
    done_queue = ReviewQueue.objects.create(project=project, name="done queue", rubric_version=version, blind=True,
                                            reviewers_per_item=2)
    done_item = ReviewItem.objects.create(queue=done_queue, position=0, rollout=secret, completed_count=1)
    ReviewAssignment.objects.create(item=done_item, annotator=annotator, status=AssignmentStatus.DONE,
                                    reserved_until=timezone.now(), finished_at=timezone.now())
    HumanLabel.objects.create(rollout=secret, rubric_version=version, criterion_key="polite", annotator=annotator,
                              queue=done_queue, value=1.0)
    # A blind ranking queue: the annotator holds the item ranking the secret rollout's group, in which `grouped` is
    # only a member (not the item's own rollout); the other annotator has already ranked it.
    ranking_queue = ReviewQueue.objects.create(project=project, name="blind ranking", rubric_version=version,
                                               blind=True, mode="ranking", reviewers_per_item=2)
    ranking_item = ReviewItem.objects.create(queue=ranking_queue, position=0, rollout=secret, completed_count=1,
                                             group_rollout_ids=[secret.pk, grouped.pk])
    ReviewAssignment.objects.create(item=ranking_item, annotator=annotator, status=AssignmentStatus.RESERVED,
                                    reserved_until=timezone.now() + timedelta(hours=1))
    ReviewAssignment.objects.create(item=ranking_item, annotator=other, status=AssignmentStatus.DONE,
                                    reserved_until=timezone.now(), finished_at=timezone.now())
    others_ranking = RankingLabel.objects.create(item=ranking_item, rubric_version=version, annotator=other,
                                                 queue=ranking_queue, ranking=[grouped.pk, secret.pk],
                                                 comment="SECRET-OTHER-RANKING-xyz")
    others_gold = GoldResponse.objects.create(rollout=secret, annotator=other, queue=ranking_queue,
                                              text="SECRET-OTHER-GOLD-xyz")
    PairwiseLabel.objects.create(rollout_a=secret, rollout_b=grouped, rubric_version=version, annotator=other,
                                 preferred="a", shown_a_first=True, comment="SECRET-OTHER-PAIR-xyz")

    # An export another member made, with the scores in its file.
    export = objs["export"]
    export.filters = {"rubric_version": version.pk}
    export.save(update_fields=["filters"])
    export_services.export_write(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == JobStatus.SUCCEEDED and "0.7315" in export.file.open("rb").read().decode()

    tool_jobs = {kind: RubricToolJob.objects.create(project=project, kind=kind, rubric_version=version, task=task,
                                                    status=JobStatus.SUCCEEDED, created_by=owner)
                 for kind in RubricToolJob.Kind.values}
    return {**objs, "owner": owner, "annotator": annotator, "secret": secret, "training": training,
            "visible": visible, "grouped": grouped, "queue": queue, "item": item, "done_queue": done_queue,
            "done_item": done_item, "ranking_queue": ranking_queue, "ranking_item": ranking_item,
            "others_label": others_label, "others_ranking": others_ranking, "others_gold": others_gold,
            "tool_jobs": tool_jobs}


def _project(owner):
    from tests.factories import ProjectFactory

    project = ProjectFactory(name="Blind")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    return project


# --- the URL patterns --------------------------------------------------------------------------------------------


def url_patterns() -> list[tuple[str, frozenset[str]]]:
    """(name, its keyword arguments) of every URL pattern, namespaces joined with ':'."""
    found: list[tuple[str, frozenset[str]]] = []

    def walk(patterns, namespace: str, kwargs: frozenset[str]) -> None:
        for p in patterns:
            args = kwargs | frozenset(p.pattern.regex.groupindex)
            if isinstance(p, URLResolver):
                if p.namespace in SKIPPED_NAMESPACES:
                    continue
                walk(p.url_patterns, f"{namespace}{p.namespace}:" if p.namespace else namespace, args)
            elif isinstance(p, URLPattern):
                found.append((f"{namespace}{p.name}" if p.name else f"<unnamed {p.pattern}>", args))

    walk(get_resolver().url_patterns, "", frozenset())
    return found


def argument_values(w: dict) -> tuple[dict[str, list], dict[str, list[dict]]]:
    """Values for each URL argument, and per URL name where an argument means different things."""
    job_ids = {
        "rollouts:job_detail": w["job"].pk, "rollouts:job_cancel": w["job"].pk, "rollouts:job_retry": w["job"].pk,
        "judging:detail": w["judge_job"].pk, "judging:cancel": w["judge_job"].pk, "judging:retry": w["judge_job"].pk,
        "rubrics:preview_job": w["tool_jobs"]["preview"].pk, "rubrics:draft_job": w["tool_jobs"]["draft"].pk,
        "rubrics:draft_accept": w["tool_jobs"]["draft"].pk, "rubrics:dryrun_job": w["tool_jobs"]["dry_run"].pk,
    }
    per_url: dict[str, list[dict]] = {name: [{"job_id": pk}] for name, pk in job_ids.items()}
    items = [{"queue_id": w["queue"].pk, "item_id": w["item"].pk},
             {"queue_id": w["done_queue"].pk, "item_id": w["done_item"].pk},
             {"queue_id": w["ranking_queue"].pk, "item_id": w["ranking_item"].pk}]
    for name in ("item", "autosave", "note", "submit", "skip", "pairwise", "gold", "ranking"):
        per_url[f"reviews:{name}"] = items
    api_pk = {
        "project": w["project"].pk, "task": w["task"].pk, "example": w["example"].pk, "rubric": w["rubric"].pk,
        "rubric-version": w["version"].pk, "endpoint": w["endpoint"].pk, "generation-job": w["job"].pk,
        "rollout": [w["secret"].pk, w["training"].pk, w["grouped"].pk], "judge-job": w["judge_job"].pk,
        "criterion-score": list(CriterionScore.objects.filter(rollout=w["secret"]).values_list("pk", flat=True)),
        "rollout-score": list(RolloutScore.objects.filter(rollout=w["secret"]).values_list("pk", flat=True)),
        "review-queue": [w["queue"].pk, w["done_queue"].pk, w["ranking_queue"].pk],
        "label": [w["label"].pk, w["others_label"].pk],
        # Items carry the sampler's priority (here the blind judge score), which the API must never show.
        "review-item": [w["item"].pk, w["done_item"].pk, w["ranking_item"].pk],
        "gold-response": [w["gold"].pk, w["others_gold"].pk],
        "ranking-label": [w["ranking"].pk, w["others_ranking"].pk], "training-run": w["run"].pk,
        "training-metric": w["metric"].pk, "checkpoint": w["checkpoint"].pk, "export": w["export"].pk,
    }
    for basename, pks in api_pk.items():
        for suffix in ("detail", "cancel", "download", "push", "guidelines", "next"):
            per_url[f"{basename}-{suffix}"] = [{"pk": pk} for pk in (pks if isinstance(pks, list) else [pks])]
    generic = {
        "project_id": [w["project"].pk], "rollout_id": [w["secret"].pk, w["training"].pk, w["grouped"].pk],
        "group_key": [w["secret"].group_key, w["training"].group_key, w["grouped"].group_key],
        "queue_id": [w["queue"].pk, w["done_queue"].pk, w["ranking_queue"].pk],
        "key": ["polite"], "run_id": [w["run"].pk], "export_id": [w["export"].pk], "task_id": [w["task"].pk],
        "example_id": [w["example"].pk], "rubric_id": [w["rubric"].pk], "number": [w["version"].number],
        "version_id": [w["version"].pk], "endpoint_id": [w["endpoint"].pk], "user_id": [w["annotator"].pk],
        # Endpoint checks hold a connection test's reply, never a score: a missing one is enough here.
        "check_id": [1], "format": ["json"],
    }
    return generic, per_url


def fill(name: str, args: frozenset[str], generic: dict, per_url: dict) -> list[dict] | None:
    """Every combination of argument values for one URL pattern, or None when an argument is unknown (an argument
    whose meaning depends on the URL, such as `job_id` or `pk`, needs an entry of that URL in `per_url`)."""
    overrides = [{k: v for k, v in o.items() if k in args} for o in per_url.get(name, [{}])]
    free = sorted(args - set(overrides[0]))
    if any(arg not in generic for arg in free):
        return None
    combos: list[dict] = [{}]
    for arg in free:
        combos = [{**c, arg: v} for c in combos for v in generic[arg]]
    return [{**c, **o} for c in combos for o in overrides]


def requests_for(w: dict) -> list[tuple[str, str]]:
    """(URL name, path) of every pattern filled with the world's objects."""
    generic, per_url = argument_values(w)
    paths = []
    for name, args in url_patterns():
        combos = fill(name, args, generic, per_url)
        assert combos is not None, f"{name} takes {sorted(args)}: add values for it to argument_values()"
        for kwargs in combos:
            paths.append((name, reverse(name, kwargs=kwargs)))
    return paths


def test_every_url_pattern_is_requested(blind_world):
    generic, per_url = argument_values(blind_world)
    unknown = [(name, sorted(args)) for name, args in url_patterns() if fill(name, args, generic, per_url) is None]
    assert not unknown, f"URL patterns this test cannot fill (add their arguments to argument_values): {unknown}"
    names = {name for name, _ in url_patterns()}
    assert not [n for n in names if n.startswith("<unnamed")], "name every URL pattern"
    # The walk reaches the pages and API routes the blind rule is about.
    assert {"rollouts:list", "rollouts:detail", "reviews:disagreements", "exports:download", "rollout-list",
            "export-download", "criterion-score-list", "training-metric-list", "review-item-detail",
            "review-queue-guidelines", "review-queue-next", "gold-response-detail", "ranking-label-detail"} <= names


def oracle_queries(w: dict) -> tuple[list[dict], list[tuple[dict, dict]]]:
    """Query strings to send everywhere, and pairs whose answers must not differ for a blind rollout."""
    rv = w["version"].pk
    pairs = [
        ({"rubric_version": rv, "score_min": "0.1"}, {"rubric_version": rv, "score_min": "0.9"}),
        ({"rubric_version": rv, "score_max": "0.9"}, {"rubric_version": rv, "score_max": "0.1"}),
        ({"score_min": "0.1"}, {"score_min": "0.9"}),
        ({"rubric_version": rv, "agreement": "disagree"}, {"rubric_version": rv, "agreement": "agree"}),
    ]
    # The parameters the pages read (agreement, disagreements, align, run samples, the labeling page's reveal),
    # and sorting, which no page offers by score today but which must not become an oracle either.
    extra = {"rubric_version": rv, "version": rv, "key": "polite", "fingerprint": "judge-fp", "labels": rv,
             "a_version": rv, "a_fp": "judge-fp", "b_version": rv, "b_fp": "training-reward",
             "after": w["done_item"].pk, "step": 1, "runs": w["run"].pk, "view": "rendered", "sort": "score",
             "ordering": "-score", "order": "reward"}
    return [{}, extra], pairs


def body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")


def get(client, path: str, query: dict, *, htmx: bool = False):
    url = f"{path}?{urlencode(query)}" if query else path
    response = client.get(url, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code < 500, f"GET {url}: {response.status_code}"
    return url, body(response)


def test_no_read_path_shows_a_blind_rollouts_judge_scores(client, blind_world):
    w = blind_world
    client.force_login(w["annotator"])
    singles, pairs = oracle_queries(w)
    leaks, oracles = [], []
    shown: dict[str, int] = {}  # URL name → plain GETs that answered 200 with a blind rollout on the page
    for name, path in requests_for(w):
        for query in singles:
            for htmx in (False, True):
                url, text = get(client, path, query, htmx=htmx)
                leaks += [(url, s) for s in SECRETS if s in text]
                shown[name] = shown.get(name, 0) + (MARK_R in text or MARK_T in text or MARK_G in text)
        for low, high in pairs:
            (url_low, a), (url_high, b) = get(client, path, low), get(client, path, high)
            leaks += [(u, s) for u, t in ((url_low, a), (url_high, b)) for s in SECRETS if s in t]
            for marker in (MARK_R, MARK_T, MARK_G):
                if (marker in a) != (marker in b):
                    oracles.append((url_low, url_high, marker))
        if name not in NOT_POSTED:
            client.force_login(w["annotator"])
            response = client.post(path, {})
            assert response.status_code < 500, f"POST {path}: {response.status_code}"
            leaks += [(f"POST {path}", s) for s in SECRETS if s in body(response)]
    # The world's ids reach real pages: the blind rollouts are on them (the test is not passing on 404s).
    for name in ("rollouts:list", "rollouts:detail", "rollouts:group", "reviews:item", "rollout-list",
                 "rollout-detail"):
        assert shown.get(name), f"{name} never showed a blind rollout"
    by_page = sorted({url.split("?")[0] for url, _ in leaks})
    assert not leaks and not oracles, (f"blind scores shown on {len(by_page)} paths: {by_page}; e.g. {leaks[:3]}. "
                                       f"Filters that tell blind rollouts apart by score: {oracles}")


def test_the_filters_still_work_on_scores_the_annotator_may_see(client, blind_world):
    """The oracle pairs above are real filters: they separate the visible rollout (0.25), and separate the blind one
    for members who are not blind."""
    w = blind_world
    path = f"/api/v1/projects/{w['project'].pk}/rollouts/"
    rv = w["version"].pk
    client.force_login(w["annotator"])
    assert MARK_V in get(client, path, {"rubric_version": rv, "score_max": "0.3"})[1]
    assert MARK_V not in get(client, path, {"rubric_version": rv, "score_min": "0.3"})[1]
    client.force_login(w["owner"])
    assert MARK_R in get(client, path, {"rubric_version": rv, "score_min": "0.7"})[1]
    assert MARK_R not in get(client, path, {"rubric_version": rv, "score_min": "0.8"})[1]
    page = reverse("rollouts:list", args=[w["project"].pk])
    assert MARK_R in get(client, page, {"rubric_version": rv, "score_min": "0.7"})[1]
    assert MARK_R not in get(client, page, {"rubric_version": rv, "score_min": "0.8"})[1]
    assert "SECRET-RATIONALE-xyz" in get(client, reverse("rollouts:detail", args=[w["project"].pk, w["secret"].pk]),
                                         {})[1]
    download = reverse("exports:download", args=[w["project"].pk, w["export"].pk])
    assert "0.7315" in get(client, download, {})[1]
    # The same file, made by the owner, is refused to the blind annotator, with the reason.
    client.force_login(w["annotator"])
    refused = client.get(download)
    assert refused.status_code == 403 and "blind review queue" in refused.content.decode()
