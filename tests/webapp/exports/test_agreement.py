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

# In `scored`: rollout 1 has judge 0.9 vs human 1.0 on "polite" (gap 0.1); rollout 2 has judge 0.5 vs human 0.0
# (gap 0.5). Nothing else is labeled.


@pytest.mark.django_db
def test_export_keeps_agreeing_or_disagreeing_rollouts(scored):
    r = scored["rollouts"]

    def ids(**filters) -> set[int]:
        _, rows = run(scored, ExportKind.ROLLOUTS, "jsonl", **filters)
        return {row["rollout_id"] for row in rows}

    assert ids(agreement="agree") == {r[1].pk}
    assert ids(agreement="disagree") == {r[2].pk}  # a gap of exactly the tolerance is a disagreement
    assert ids(agreement="agree", agreement_tolerance=0.6) == {r[1].pk, r[2].pk}
    assert ids(agreement="disagree", agreement_tolerance=0.05) == {r[1].pk, r[2].pk}
    # The human value is the mean of the labels: a second annotator saying 1.0 brings rollout 2 to 0.5, the judge's.
    HumanLabel.objects.create(rollout=r[2], rubric_version=scored["version"], criterion_key="polite",
                              annotator=UserFactory(), value=1.0)
    assert ids(agreement="agree") == {r[1].pk, r[2].pk}
    # Other kinds take the filter too, and the calibration set's `agree` column uses the same tolerance.
    _, sft = run(scored, ExportKind.SFT, "jsonl", agreement="agree")
    assert [row["rollout_id"] for row in sft] == [r[1].pk]
    _, calibration = run(scored, ExportKind.CALIBRATION, "jsonl", agreement="agree", agreement_tolerance=0.2)
    # Rollout 2 agrees through the mean of its labels; each label on its own is 0.5 from the judge.
    assert sorted((row["rollout_id"], row["agree"]) for row in calibration) == [
        (r[1].pk, True), (r[2].pk, False), (r[2].pk, False)]


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
    with django_assert_max_num_queries(3):
        agree = api.get(url, {"agreement": "agree", "rubric_version": version.pk})
    assert [row["id"] for row in agree.json()["results"]] == [r[1].pk]
    disagree = api.get(url, {"agreement": "disagree", "rubric_version": version.pk})
    assert [row["id"] for row in disagree.json()["results"]] == [r[2].pk]
    loose = api.get(url, {"agreement": "agree", "rubric_version": version.pk, "agreement_tolerance": 0.9})
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
