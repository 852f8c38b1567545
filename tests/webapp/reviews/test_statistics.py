"""Regression tests for issue 16's defects: each fails on the code before the fix (numbers in the comments)."""

from __future__ import annotations

import numpy as np
import pytest
from django.urls import reverse
from scipy.stats import pearsonr
from sklearn.metrics import cohen_kappa_score

from tests.factories import RubricFactory, RubricVersionFactory, UserFactory
from tests.webapp.reviews import statdata as sd
from tests.webapp.reviews.test_statistics_properties import rollout_pool
from webapp.core.models import Role
from webapp.reviews import agreement, dashboard
from webapp.reviews.calibration import calibration_status


@pytest.fixture
def pool(db):
    rollouts = rollout_pool(24)
    return {"rollouts": rollouts, "annotators": [UserFactory() for _ in range(3)],
            "rubric": RubricFactory(project=rollouts[0].project)}


def build(pool, datasets):
    version = RubricVersionFactory(rubric=pool["rubric"], spec={"criteria": [d.criterion.spec for d in datasets]})
    sd.write(version, pool["rollouts"], datasets, pool["annotators"])
    return version, {row.criterion.key: row for row in dashboard.agreement_dashboard_cached(version)}


def test_defect_1_gate_and_page_read_one_number_on_split_labels(pool):
    # 20 yes/no items, 6 of them split 1–1 between two annotators. Before: page 1.000 (splits snapped up), gate 0.444.
    c = sd.choices_criterion("ok", 2)
    items = [sd.Item(float(i % 2), [float(i % 2)]) for i in range(14)]
    items += [sd.Item(1.0, [0.0, 1.0]) for _ in range(6)]
    version, rows = build(pool, [sd.Dataset(c, items)])
    row = rows["ok"]
    assert (row.coverage.split, row.coverage.excluded, row.report.n) == (6, 6, 14)
    assert row.headline.value == pytest.approx(1.0)
    [gate] = calibration_status(version, min_n=10).criteria
    assert (gate.kappa, gate.n, gate.ci_low, gate.ci_high) == (
        row.headline.value, row.headline.n, row.headline.ci_low, row.headline.ci_high)


def test_the_human_value_rule_is_exact_and_leaves_exact_halves_out():
    assert agreement.human_value(7, 2) is None  # choices 3 and 4 of 7: a split, not 3 (float AVG snapped it down)
    assert agreement.human_value(13, 2) is None  # 6 and 7 of 11
    assert agreement.human_value(1, 2) is None  # 1–1 on yes/no
    assert agreement.human_value(4, 3) == 1 and agreement.human_value(5, 3) == 2  # 1.33 → 1, 1.67 → 2
    assert agreement.human_value(0, 1) == 0
    with pytest.raises(ValueError):
        agreement.human_value(0, 0)


def test_defect_2_three_equal_labels_equal_the_judge_exactly(pool):
    # Before: AVG(0.7, 0.7, 0.7) = 0.6999999999999998, so percent agreement 0 and Spearman below 1.
    score = sd.continuous_criterion("score")
    rate = sd.int_scale_criterion("rate")
    values = [0.7, 0.1, 0.3, 0.9]
    cont = [sd.Item(v, [v, v, v]) for v in values] + [sd.Item(0.2, [0.1, 0.3])]
    ints = [sd.Item(float(v), [float(v)] * 3) for v in (7, 1, 3, 9)] + [sd.Item(5.0, [4.0, 6.0])]
    _, rows = build(pool, [sd.Dataset(score, cont), sd.Dataset(rate, ints)])
    for key in ("score", "rate"):
        report = rows[key].report
        assert report.percent_agreement.value == 1.0, key
        assert report.spearman.value == pytest.approx(1.0, abs=1e-12), key
        assert report.mae.value == pytest.approx(0.0, abs=1e-12), key
    assert rows["rate"].report.weighted_kappa.value == pytest.approx(1.0)


def test_defect_3_a_score_of_exactly_0_6_opens_the_upper_calibration_bin():
    for judge in (3 / 5, 6 / 10):  # choice 3 of 6, point 6 of a 0–10 scale
        bins = agreement.calibration_bins([judge], [1.0], bins=5)
        assert [b.n for b in bins] == [0, 0, 0, 1, 0], judge  # before: [0, 0, 1, 0, 0]
        assert bins[3].low == 0.6


def test_defect_4_pearson_is_stable_for_tiny_spread():
    rng = np.random.default_rng(0)
    human = rng.random(200)
    judge = 0.5 + 1e-7 * (human + rng.normal(0, 0.1, 200))  # before: "undefined"
    assert agreement.pearson(judge, human).value == pytest.approx(pearsonr(judge, human).statistic, abs=1e-9)
    judge = 0.5 + 1e-4 * (human + rng.normal(0, 0.5, 200))  # before: off by 1e-10
    assert agreement.pearson(judge, human).value == pytest.approx(pearsonr(judge, human).statistic, abs=1e-12)
    report = agreement.agreement_report(judge, human, kind="score", n_resamples=200)
    assert report.pearson.ci_low is not None and report.pearson.undefined_resamples == 0


def test_defect_5_missing_data_is_counted_per_criterion_and_judge(pool, make_member, client):
    c = sd.choices_criterion("ok", 3)
    items = [sd.Item(float(i % 3), [float(i % 3)]) for i in range(12)]
    items += [sd.Item(sd.FAILED, [1.0]), sd.Item(sd.FAILED, [2.0]), sd.Item(sd.NAN, [0.0]), sd.Item(sd.INF, [1.0]),
              sd.Item(sd.MISSING, [2.0]), sd.Item(0.0, [1.0, 2.0]), sd.Item(sd.MISSING, [0.0, 1.0])]
    version, rows = build(pool, [sd.Dataset(c, items)])
    coverage = rows["ok"].coverage
    # Before: "n missing" was always 0 (the SQL dropped empty scores) and NaN/inf scores were paired.
    assert (coverage.labelled, coverage.paired, coverage.judge_failed, coverage.judge_missing, coverage.split,
            coverage.excluded) == (19, 12, 2, 4, 2, 1)
    user, _ = make_member(Role.VIEWER, pool["rubric"].project)
    client.force_login(user)
    html = client.get(reverse("reviews:agreement", args=[pool["rubric"].project_id]), {"version": version.pk}
                      ).content.decode()
    for name, count in (("labelled", 19), ("paired", 12), ("judge_failed", 2), ("judge_missing", 4), ("split", 2),
                        ("excluded", 1)):
        assert f'data-count="{name}">{count}<' in html, name


def test_defect_6_and_7_one_kappa_per_kind_named_and_units_by_kind(pool):
    # A 0–10 scale: the page used linear kappa over ranks of distinct values seen, the gate quadratic over steps;
    # MAE was labelled "choice steps" and shown on 0..1 (0.072 for 0.72 points).
    rate = sd.int_scale_criterion("rate")
    rng = np.random.default_rng(3)
    truth = rng.integers(2, 9, 24)
    judge = np.clip(truth + rng.integers(-2, 3, 24), 0, 10)
    version, rows = build(pool, [sd.Dataset(rate, [sd.Item(float(j), [float(h)]) for j, h in zip(judge, truth, strict=True)])])
    row = rows["rate"]
    assert row.kappa_name == "Quadratic-weighted kappa (11 points)"
    assert row.headline.value == pytest.approx(
        cohen_kappa_score(truth, judge, labels=list(range(11)), weights="quadratic"), abs=1e-12)
    assert row.criterion.unit == "points on 0–10"
    assert row.report.mae.value == pytest.approx(np.mean(np.abs(judge - truth)), abs=1e-12)
    [gate] = calibration_status(version, min_n=5).criteria
    assert gate.kappa == row.headline.value and gate.statistic == row.headline_name
    continuous = sd.continuous_criterion("score")
    assert dashboard.kappa_name(dashboard.form_criteria(RubricVersionFactory(
        rubric=pool["rubric"], spec={"criteria": [continuous.spec]}))[0]).startswith("Kappa (none")


def test_defect_7_alpha_counts_items_like_the_other_figures():
    alpha = agreement.krippendorff_alpha([[0, 1, 2, 1], [0, 1, 2, 2], [None, 1, 2, None]])
    assert alpha.n == 4 and alpha.ratings == 10  # before: n = 10 next to figures counting items


def test_defect_8_degenerate_figures_are_dashes_with_reasons():
    constant_judge = agreement.agreement_report([1, 1, 1, 1, 1, 1], [0, 1, 2, 1, 0, 2], labels=[0, 1, 2])
    kappa = constant_judge.weighted_kappa
    assert kappa.value is None and "same value" in kappa.reason and kappa.ci_low is None  # before: 0.000 [0, 0]
    two = agreement.agreement_report([0, 1], [0, 1], labels=[0, 1], n_resamples=100)
    for stat in (two.cohen_kappa, two.weighted_kappa, two.gwet_ac1, two.pabak, two.krippendorff_alpha):
        assert stat.value is None and "at least 3" in stat.reason  # before: kappa 1.000 at n = 2


def test_ac1_and_pabak_stay_high_where_kappa_collapses_under_prevalence():
    # 95 % raw agreement, almost everything "yes": kappa is about 0, AC1 about 0.95.
    judge = [1] * 95 + [0] * 2 + [1] * 3
    human = [1] * 95 + [1] * 2 + [0] * 3
    report = agreement.agreement_report(judge, human, labels=[0, 1], n_resamples=200)
    assert report.cohen_kappa.value == pytest.approx(cohen_kappa_score(human, judge), abs=1e-12)
    assert report.cohen_kappa.value < 0
    assert report.gwet_ac1.value > 0.94 and report.pabak.value == pytest.approx(0.9)
    assert report.gwet_ac1.ci_low is not None and report.gwet_ac1.undefined_resamples is not None


def test_labels_follow_an_unchanged_criterion_to_a_new_rubric_version(pool):
    """Re-scoring the labelled rollouts under v3 keeps v2's labels for criteria that did not change (before: the launch
    form said "0 paired items" for v3); a changed criterion starts afresh; an annotator counts once, newest label."""
    from webapp.judging.models import CriterionScore
    from webapp.reviews.services import label_save

    kept, changed = sd.choices_criterion("kept", 3), sd.choices_criterion("changed", 3)
    items = [sd.Item(float(i % 3), [float(i % 3)]) for i in range(21)]
    v2, _ = build(pool, [sd.Dataset(kept, items), sd.Dataset(changed, items)])
    reworded = dict(changed.spec, question="A different question?")
    v3 = RubricVersionFactory(rubric=pool["rubric"], spec={"criteria": [dict(kept.spec, weight=2.0), reworded]})
    CriterionScore.objects.bulk_create([
        CriterionScore(rollout=r, rubric_version=v3, criterion_key=key, judge_fingerprint="judge-x", score=(i % 3) / 2)
        for i, r in enumerate(pool["rollouts"][:21]) for key in ("kept", "changed")])
    # The first annotator relabels item 0 under v3 with another choice: that label replaces theirs from v2.
    label_save(annotator=pool["annotators"][0], rollout_id=pool["rollouts"][0].pk, rubric_version=v3,
               criterion_key="kept", row_version=0, value=1.0)
    rows = {row.criterion.key: row for row in dashboard.agreement_dashboard_cached(v3)}
    assert rows["kept"].coverage.labelled == 21 and rows["kept"].report.n == 21
    assert rows["kept"].report.percent_agreement.value == pytest.approx(20 / 21)
    assert "changed" not in rows  # nothing labelled under the new wording: no card
    gate = {c.key: c for c in calibration_status(v3).criteria}
    assert gate["kept"].n == 21 and gate["changed"].n == 0
    assert {v.pk for v in dashboard.labeled_versions(pool["rubric"].project_id)} >= {v2.pk, v3.pk}  # v3 can be picked


def test_bias_figures_carry_bootstrap_intervals_over_their_units():
    # A judge that picks the first-shown rollout 80 % of the time: the interval for the first-position rate
    # excludes 0.5 at 200 pairs, and equals a naive loop that resamples pairs.
    rng = np.random.default_rng(1)
    first = ["A" if x < 0.8 else "B" for x in rng.random(200)]
    swapped = ["A" if x < 0.8 else "B" for x in rng.random(200)]
    report = agreement.position_swap_consistency(first, swapped, n_resamples=400, seed=4)
    rate = report.first_position_rate
    assert rate.value == pytest.approx((first.count("A") + swapped.count("A")) / 400)
    assert 0.5 < rate.ci_low < rate.value < rate.ci_high
    consistency = report.consistency
    assert consistency.ci_low < consistency.value < consistency.ci_high and rate.undefined_resamples == 0

    lengths = rng.integers(10, 500, 300)
    human = rng.random(300)
    judge = 0.5 * human + lengths / 1000  # rewards length
    bias = agreement.length_score_correlation(lengths, judge, human, n_resamples=300)
    assert bias.difference == pytest.approx(bias.judge.value - bias.human.value, abs=1e-12)
    assert 0 < bias.difference_low < bias.difference < bias.difference_high


@pytest.mark.parametrize("criterion", [sd.choices_criterion("pick", 4), sd.continuous_criterion("score")],
                         ids=["choices", "continuous"])
def test_judge_against_each_annotator_and_alpha_with_the_judge_as_a_rater(pool, make_member, client, criterion):
    import krippendorff

    rng = np.random.default_rng(8)
    items = []
    for _ in range(24):
        truth = int(rng.integers(0, 4)) if criterion.steps else float(rng.integers(0, 21) / 20)
        noisy = (lambda v: float(np.clip(v + rng.integers(-1, 2), 0, 3))) if criterion.steps else (
            lambda v: float(np.clip(round(v + rng.normal(0, 0.1), 2), 0, 1)))
        labels = [noisy(truth) for _ in range(int(rng.integers(1, 4)))]
        items.append(sd.Item(noisy(truth) if rng.random() > 0.1 else sd.FAILED, labels))
    version, _ = build(pool, [sd.Dataset(criterion, items)])
    result = dashboard.rater_agreement(version, fingerprint="judge-x", key=criterion.key)
    level = "ordinal" if criterion.steps else "interval"
    names = [a.username for a in pool["annotators"]]
    for position, got in enumerate(sorted(result.annotators, key=lambda a: names.index(a.username))):
        pairs = [(i.judge, i.labels[position]) for i in items if len(i.labels) > position and i.judge != sd.FAILED]
        judge, human = np.array(pairs).T.astype(float)
        if criterion.steps:
            want = cohen_kappa_score(human.astype(int), judge.astype(int), labels=list(range(4)), weights="quadratic")
        else:
            want = krippendorff.alpha(reliability_data=np.vstack([judge, human]), level_of_measurement="interval")
        assert got.headline.n == len(pairs) and got.headline.value == pytest.approx(want, abs=1e-9)
        assert got.percent_agreement.value == pytest.approx(np.mean(judge == human), abs=1e-12)
    table = np.full((4, len(items)), np.nan)
    for col, item in enumerate(items):
        table[: len(item.labels), col] = item.labels
        if item.judge != sd.FAILED:
            table[3, col] = item.judge
    want_alpha = krippendorff.alpha(reliability_data=table, level_of_measurement=level)
    assert result.alpha_with_judge.value == pytest.approx(want_alpha, abs=1e-9)
    assert result.alpha_with_judge.n == int((np.isfinite(table).sum(axis=0) >= 2).sum())
    user, _ = make_member(Role.VIEWER, pool["rubric"].project)
    client.force_login(user)
    html = client.get(reverse("reviews:disagreements", args=[pool["rubric"].project_id]),
                      {"version": version.pk, "fingerprint": "judge-x", "key": criterion.key}).content.decode()
    assert f"{want_alpha:.3f}" in html.split('data-stat="alpha_with_judge"')[1].split("</p>")[0]
    assert html.count("data-annotator=") == 3
