"""The agreement dashboard's cache key (`dashboard.data_signature`) changes on every label write, however it is made,
and reading it costs no label rows: the database counts label writes per version (`LabelWrites`, triggers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import RolloutFactory, RubricVersionFactory, TaskFactory, UserFactory
from tests.webapp.reviews.conftest import SPEC
from webapp.core.models import Role
from webapp.judging.models import CriterionScore
from webapp.reviews import dashboard, services
from webapp.reviews.models import HumanLabel, PairwiseJudgment, PairwiseLabel

pytestmark = pytest.mark.django_db
CHOICES = ["no", "partly", "yes"]


@pytest.fixture
def labelled(make_member) -> dict[str, Any]:
    viewer, project = make_member(Role.VIEWER)
    annotator, _ = make_member(Role.ANNOTATOR, project)
    return build_labelled(project, viewer=viewer, annotator=annotator)


def build_labelled(project, *, viewer, annotator) -> dict[str, Any]:
    """v1 and v2 of one rubric with the same criteria (v2 carries v1's labels over), 6 rollouts judged under v2,
    each labelled under v1 and under v2."""
    v1 = RubricVersionFactory(rubric__project=project, spec=SPEC)
    v2 = RubricVersionFactory(rubric=v1.rubric, spec=SPEC)
    task = TaskFactory(project=project)
    rollouts = [RolloutFactory(project=project, task=task) for _ in range(6)]
    for i, rollout in enumerate(rollouts):
        CriterionScore.objects.create(rollout=rollout, rubric_version=v2, criterion_key="helpful",
                                      judge_fingerprint="judge-a", raw_choice=CHOICES[i % 3], score=(i % 3) / 2)
        for version in (v1, v2):
            HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="helpful",
                                      annotator=annotator, choice=CHOICES[(i + 1) % 3], value=((i + 1) % 3) / 2)
    return {"project": project, "viewer": viewer, "annotator": annotator, "v1": v1, "v2": v2, "rollouts": rollouts}


def _label(s: dict[str, Any]) -> HumanLabel:
    return HumanLabel.objects.filter(rubric_version=s["v2"]).order_by("pk").first()


def _raw(sql: str, params: list[Any]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _raw_insert(s: dict[str, Any]) -> None:
    _raw("INSERT INTO reviews_humanlabel (rollout_id, rubric_version_id, criterion_key, annotator_id, choice, value,"
         " comment, reward_hacking, row_version, created_at, updated_at)"
         " VALUES (%s, %s, 'helpful', %s, 'yes', 1.0, '', false, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
         [s["rollouts"][0].pk, s["v2"].pk, UserFactory().pk])


def _raw_insert_fk_checks_off(s: dict[str, Any]) -> None:
    # As the benchmarks seed: per-row foreign-key triggers off (pg_restore --disable-triggers); the counters still count.
    _raw("SET LOCAL session_replication_role = replica", [])
    _raw_insert(s)
    _raw("SET LOCAL session_replication_role = origin", [])


def _truncate(table: str) -> None:
    # The test's transaction still holds the fixture's deferred foreign-key checks, which TRUNCATE refuses to leave.
    _raw("SET CONSTRAINTS ALL IMMEDIATE", [])
    _raw(f"TRUNCATE {table}", [])


# Every way a label can be written: each must change the signature. A new write path gets a line here.
LABEL_WRITES: dict[str, Callable[[dict[str, Any]], object]] = {
    "create (ORM)": lambda s: HumanLabel.objects.create(
        rollout=s["rollouts"][0], rubric_version=s["v2"], criterion_key="helpful", annotator=UserFactory(),
        choice="yes", value=1.0),
    "create via the labeling service": lambda s: services.label_save(
        annotator=UserFactory(), rollout_id=s["rollouts"][0].pk, rubric_version=s["v2"], criterion_key="helpful",
        row_version=0, choice="yes", value=1.0),
    "update via the labeling service": lambda s: services.label_save(
        annotator=s["annotator"], rollout_id=_label(s).rollout_id, rubric_version=s["v2"], criterion_key="helpful",
        row_version=_label(s).row_version, choice=CHOICES[2 - CHOICES.index(_label(s).choice)],
        value=1.0 - _label(s).value),
    "save() of the model": lambda s: _label(s).save(),
    "bulk_create": lambda s: HumanLabel.objects.bulk_create([
        HumanLabel(rollout=r, rubric_version=s["v2"], criterion_key="helpful", annotator=UserFactory(), value=0.0)
        for r in s["rollouts"][:3]]),
    # queryset.update() leaves updated_at as it was: the old COUNT / MAX(updated_at) signature missed this one.
    "queryset.update": lambda s: HumanLabel.objects.filter(pk=_label(s).pk).update(value=0.0, choice="no"),
    "queryset.delete": lambda s: HumanLabel.objects.filter(rubric_version=s["v2"], rollout=s["rollouts"][0]).delete(),
    "delete() of the model": lambda s: _label(s).delete(),
    "delete of the rollout (cascade)": lambda s: s["rollouts"][0].delete(),
    "delete of the annotator (cascade)": lambda s: s["annotator"].delete(),
    "write on the earlier version (carried over)": lambda s: HumanLabel.objects.filter(rubric_version=s["v1"]).update(
        value=0.0),
    "delete of the earlier version (cascade)": lambda s: s["v1"].delete(),
    "raw SQL insert": _raw_insert,
    "raw SQL insert with foreign-key triggers off": _raw_insert_fk_checks_off,
    "raw SQL update": lambda s: _raw("UPDATE reviews_humanlabel SET value = 0 WHERE id = %s", [_label(s).pk]),
    "raw SQL delete": lambda s: _raw("DELETE FROM reviews_humanlabel WHERE id = %s", [_label(s).pk]),
    "TRUNCATE": lambda s: _truncate("reviews_humanlabel"),
}


@pytest.mark.parametrize("write", LABEL_WRITES.values(), ids=LABEL_WRITES.keys())
def test_every_label_write_changes_the_dashboard_signature(labelled, write):
    before = dashboard.data_signature(labelled["v2"])
    write(labelled)
    assert dashboard.data_signature(labelled["v2"]) != before


def test_a_cached_dashboard_follows_a_label_update_that_keeps_updated_at(labelled):
    version = labelled["v2"]
    (row,) = dashboard.agreement_dashboard_cached(version, n_resamples=0)
    HumanLabel.objects.filter(rubric_version__rubric=version.rubric).update(value=0.0, choice="no")
    (after,) = dashboard.agreement_dashboard_cached(version, n_resamples=0)
    assert after.report.percent_agreement.value != row.report.percent_agreement.value
    assert after.report.percent_agreement.value == pytest.approx(2 / 6)  # the judge said "no" on 2 of 6


def _pairwise_label(s: dict[str, Any]) -> PairwiseLabel:
    a, b = s["rollouts"][:2]
    return PairwiseLabel.objects.create(rollout_a=a, rollout_b=b, rubric_version=s["v2"], annotator=UserFactory(),
                                        preferred="a", shown_a_first=True)


def _pairwise_judgment(s: dict[str, Any], pair: int = 0) -> list[PairwiseJudgment]:
    a, b = s["rollouts"][2 * pair:2 * pair + 2]
    return PairwiseJudgment.objects.bulk_create([PairwiseJudgment(
        rubric_version=s["v2"], rollout_x=a, rollout_y=b, judge_fingerprint="fp", verdict_first="A",
        verdict_swapped="B")], ignore_conflicts=True)


# Writes of what the bias diagnostics read besides criterion labels, on top of one pairwise label and one verdict.
BIAS_WRITES: dict[str, Callable[[dict[str, Any]], object]] = {
    "criterion label": LABEL_WRITES["create (ORM)"],
    "pairwise label create": _pairwise_label,
    "pairwise label update": lambda s: PairwiseLabel.objects.update(preferred="b"),
    "pairwise label delete": lambda s: PairwiseLabel.objects.all().delete(),
    "position-swap verdict (bulk, ignore_conflicts)": lambda s: _pairwise_judgment(s, pair=1),
    "position-swap verdict update": lambda s: PairwiseJudgment.objects.update(verdict_swapped="A"),
    "delete of a judged rollout (cascade)": lambda s: s["rollouts"][0].delete(),
    "TRUNCATE of the verdicts": lambda s: _truncate("reviews_pairwisejudgment"),
}


@pytest.mark.parametrize("write", BIAS_WRITES.values(), ids=BIAS_WRITES.keys())
def test_every_write_the_bias_diagnostics_read_changes_their_signature(labelled, write):
    _pairwise_label(labelled)
    _pairwise_judgment(labelled)
    before = dashboard.data_signature(labelled["v2"], sources=dashboard.BIAS_SOURCES)
    write(labelled)
    assert dashboard.data_signature(labelled["v2"], sources=dashboard.BIAS_SOURCES) != before


def test_a_verdict_written_twice_is_written_once_and_counted_once(labelled):
    _pairwise_judgment(labelled)
    before = dashboard.data_signature(labelled["v2"], sources=dashboard.BIAS_SOURCES)
    _pairwise_judgment(labelled)  # a redelivered position-check task: ON CONFLICT DO NOTHING
    assert PairwiseJudgment.objects.count() == 1
    assert dashboard.data_signature(labelled["v2"], sources=dashboard.BIAS_SOURCES) == before


def test_pairwise_writes_leave_the_dashboard_cached(labelled):
    """The dashboard reads criterion labels only: a position-swap check writing verdicts must not recompute it."""
    before = dashboard.data_signature(labelled["v2"])
    _pairwise_label(labelled)
    _pairwise_judgment(labelled)
    assert dashboard.data_signature(labelled["v2"]) == before


def _label_rows_read(queries: list[dict[str, Any]]) -> int:
    """Label rows the queries read, by EXPLAIN ANALYZE of each: rows × loops of every plan node on the label table."""
    def walk(node: dict[str, Any]) -> int:
        own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == "reviews_humanlabel" else 0
        return own + sum(walk(child) for child in node.get("Plans", []))

    total = 0
    with connection.cursor() as cursor:
        for query in queries:
            if query["sql"].lstrip().upper().startswith("SELECT"):
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query["sql"])
                plan = cursor.fetchone()[0]
                total += walk((json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"])
    return total


def test_a_warm_dashboard_view_reads_at_most_one_label_row_per_version(labelled, client):
    """Flat in the number of labels: the warm page probes whether each version has a label (labeled_versions) and
    reads the write counters, never the labels themselves (12 here; the old signature counted all of them)."""
    client.force_login(labelled["viewer"])
    url = reverse("reviews:agreement", args=[labelled["project"].pk])
    client.get(url, {"version": labelled["v2"].pk})  # computes and caches
    with CaptureQueriesContext(connection) as page:
        html = client.get(url, {"version": labelled["v2"].pk}).content.decode()
    assert "n = 6" in html
    assert not any("judging_criterionscore" in q["sql"] for q in page.captured_queries)  # read from the cache
    assert _label_rows_read(page.captured_queries) <= 2  # two versions


def test_labeled_versions_are_those_from_the_first_labelled_version_on(make_member):
    _, project = make_member(Role.VIEWER)
    v1 = RubricVersionFactory(rubric__project=project, spec=SPEC)
    v2 = RubricVersionFactory(rubric=v1.rubric, spec=SPEC)
    v3 = RubricVersionFactory(rubric=v1.rubric, spec=SPEC)
    unlabelled = RubricVersionFactory(rubric__project=project, spec=SPEC)
    RubricVersionFactory(spec=SPEC)  # another project's
    HumanLabel.objects.create(rollout=RolloutFactory(project=project), rubric_version=v2, criterion_key="helpful",
                              annotator=UserFactory(), choice="yes", value=1.0)
    assert dashboard.labeled_versions(project.pk) == [v3, v2]
    assert unlabelled not in dashboard.labeled_versions(project.pk)


def test_the_bias_fragment_is_cached_until_a_pairwise_label_arrives(labelled, client):
    client.force_login(labelled["viewer"])
    url = reverse("reviews:bias", args=[labelled["project"].pk])
    first = client.get(url, {"version": labelled["v2"].pk}, HTTP_HX_REQUEST="true").content.decode()
    with CaptureQueriesContext(connection) as again:
        assert client.get(url, {"version": labelled["v2"].pk}, HTTP_HX_REQUEST="true").content.decode() == first
    assert not any("judging_criterionscore" in q["sql"] for q in again.captured_queries)  # not recomputed
    assert _label_rows_read(again.captured_queries) == 0
    _pairwise_label(labelled)
    assert dashboard.bias_diagnostics_cached(labelled["v2"]).pairwise_n == 1
