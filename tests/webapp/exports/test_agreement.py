"""The agreement filter: exports and the rollouts API keep the rollouts where judges and humans agree, or those
where they disagree, under a rubric version, with a tolerance."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, UserFactory
from tests.webapp.exports.test_exports import run
from webapp.core.errors import ApplicationError
from webapp.exports.models import ExportKind
from webapp.exports.selectors import export_filters_clean
from webapp.exports.services import export_create
from webapp.reviews.models import HumanLabel

# In `scored`, "polite" is a yes/no question: rollout 1 has judge 0.9 ("yes") vs human yes; rollout 2 has judge 0.5 vs
# human no, and 0.5 is "no" on that scale as the agreement dashboard rounds it. Nothing else is labeled.


@pytest.mark.django_db
def test_export_keeps_agreeing_or_disagreeing_rollouts(scored):
    r, version = scored["rollouts"], scored["version"]

    def ids(**filters) -> set[int]:
        _, rows = run(scored, ExportKind.ROLLOUTS, "jsonl", **filters)
        return {row["rollout_id"] for row in rows}

    assert ids(agreement="agree") == {r[1].pk, r[2].pk}
    assert ids(agreement="disagree") == set()
    # Judge 0.4 is "no"; the human says yes: one step of a yes/no question apart, a gap of 1 on 0..1.
    HumanLabel.objects.create(rollout=r[4], rubric_version=version, criterion_key="polite",
                              annotator=scored["annotator"], value=1.0)
    assert ids(agreement="disagree") == {r[4].pk}
    assert ids(agreement="disagree", agreement_tolerance=1.0) == {r[4].pk}  # a gap of exactly the tolerance
    assert ids(agreement="agree") == {r[1].pk, r[2].pk}
    # One human value per item, as on the dashboard: a second annotator saying yes splits rollout 2 (no / yes), and
    # a split item is left out of both sides (the mean of the labels, 0.5, used to count as agreeing).
    HumanLabel.objects.create(rollout=r[2], rubric_version=version, criterion_key="polite",
                              annotator=UserFactory(), value=1.0)
    assert ids(agreement="agree") == {r[1].pk}
    assert ids(agreement="disagree") == {r[4].pk}
    # Other kinds take the filter too, and the calibration set's `agree` column compares each label the same way.
    _, sft = run(scored, ExportKind.SFT, "jsonl", agreement="agree")
    assert [row["rollout_id"] for row in sft] == [r[1].pk]
    _, calibration = run(scored, ExportKind.CALIBRATION, "jsonl", agreement="disagree", agreement_tolerance=0.2)
    assert sorted((row["rollout_id"], row["agree"]) for row in calibration) == [(r[4].pk, False)]
    _, calibration = run(scored, ExportKind.CALIBRATION, "jsonl")
    assert sorted((row["rollout_id"], row["agree"]) for row in calibration) == [
        (r[1].pk, True), (r[2].pk, False), (r[2].pk, True), (r[4].pk, False)]


@pytest.mark.django_db
def test_the_filter_pairs_items_as_the_agreement_dashboard_does(scored):
    """The same items agree here as on the dashboard: its percent agreement equals agree / (agree + disagree)."""
    from webapp.reviews.dashboard import agreement_dashboard

    r, version = scored["rollouts"], scored["version"]
    for i, value in ((0, 1.0), (3, 0.0), (4, 1.0), (6, 0.0), (7, 1.0)):
        HumanLabel.objects.create(rollout=r[i], rubric_version=version, criterion_key="polite",
                                  annotator=scored["annotator"], value=value)
    _, agree = run(scored, ExportKind.ROLLOUTS, "jsonl", agreement="agree")
    _, disagree = run(scored, ExportKind.ROLLOUTS, "jsonl", agreement="disagree")
    (polite,) = [row for row in agreement_dashboard(version, n_resamples=10) if row.criterion.key == "polite"]
    assert polite.report.percent_agreement.value == pytest.approx(len(agree) / (len(agree) + len(disagree)))
    assert polite.report.percent_agreement.n == len(agree) + len(disagree) == 7


@pytest.mark.django_db
def test_agreement_filter_is_validated(scored):
    with pytest.raises(ApplicationError, match="need a rubric_version"):
        export_filters_clean({"agreement": "agree"})
    with pytest.raises(ApplicationError, match="must be one of agree, disagree"):
        export_filters_clean({"agreement": "maybe", "rubric_version": 1})
    with pytest.raises(ApplicationError, match="above 0 and at most 1"):
        export_filters_clean({"agreement": "agree", "agreement_tolerance": 2, "rubric_version": 1})
    with pytest.raises(ApplicationError, match="needs 'agreement'"):
        export_filters_clean({"agreement_tolerance": 0.2, "rubric_version": 1})
    export = export_create(project=scored["project"], kind="rollouts", format="csv", enqueue=False,
                           filters={"agreement": "disagree", "agreement_tolerance": "0.25",
                                    "rubric_version": scored["version"].pk})
    assert export.filters["agreement_tolerance"] == 0.25


@pytest.mark.django_db
def test_rollouts_api_filters_by_agreement(scored, django_assert_max_num_queries):
    project, version, r = scored["project"], scored["version"], scored["rollouts"]
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="viewer")
    api = APIClient()
    api.force_authenticate(user)
    url = f"/api/v1/projects/{project.pk}/rollouts/"
    # The page, the version, its earlier versions (carried labels) and the paired items: a constant, whatever the size.
    with django_assert_max_num_queries(5):
        agree = api.get(url, {"agreement": "agree", "rubric_version": version.pk})
    assert {row["id"] for row in agree.json()["results"]} == {r[1].pk, r[2].pk}
    HumanLabel.objects.create(rollout=r[4], rubric_version=version, criterion_key="polite",
                              annotator=scored["annotator"], value=1.0)  # judge 0.4: "no"
    disagree = api.get(url, {"agreement": "disagree", "rubric_version": version.pk})
    assert [row["id"] for row in disagree.json()["results"]] == [r[4].pk]
    loose = api.get(url, {"agreement": "agree", "rubric_version": version.pk, "agreement_tolerance": 1.0})
    assert {row["id"] for row in loose.json()["results"]} == {r[1].pk, r[2].pk}
    assert api.get(url, {"agreement": "agree"}).status_code == 400
    assert api.get(url, {"agreement": "sometimes", "rubric_version": version.pk}).status_code == 400
    assert api.get(url, {"agreement": "agree", "rubric_version": version.pk,
                         "agreement_tolerance": 5}).status_code == 400


@pytest.mark.django_db
def test_export_form_offers_the_agreement_filter(client, scored):
    from django.urls import reverse

    from webapp.exports.models import Export

    project = scored["project"]
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="editor")
    client.force_login(user)
    page = client.get(reverse("exports:list", args=[project.pk])).content.decode()
    assert 'name="agreement"' in page and '<option value="disagree">' in page
    response = client.post(reverse("exports:create", args=[project.pk]), {
        "kind": "rollouts", "format": "jsonl", "rubric_version": scored["version"].pk, "agreement": "disagree",
        "agreement_tolerance": "0.3"})
    assert response.status_code == 302
    assert Export.objects.get(project=project).filters == {
        "rubric_version": scored["version"].pk, "agreement": "disagree", "agreement_tolerance": 0.3}


@pytest.mark.django_db
def test_disagreement_sampling_weighs_criteria_by_the_dashboards_agreement(scored):
    """The disagreement-first queue weighs each criterion by how often judge and humans agree so far: the dashboard's
    percent agreement, not a comparison of its own (which counted each label against the raw score)."""
    from webapp.reviews.dashboard import agreement_dashboard
    from webapp.reviews.sampling import _criterion_agreement

    r, version = scored["rollouts"], scored["version"]
    HumanLabel.objects.create(rollout=r[4], rubric_version=version, criterion_key="polite",
                              annotator=scored["annotator"], value=1.0)
    (polite,) = [row for row in agreement_dashboard(version, n_resamples=10) if row.criterion.key == "polite"]
    assert _criterion_agreement(version) == {"polite": pytest.approx(polite.report.percent_agreement.value)}
    assert polite.report.percent_agreement.value == pytest.approx(2 / 3)  # r1 and r2 agree, r4 does not
