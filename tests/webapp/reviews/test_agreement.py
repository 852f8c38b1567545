"""Agreement statistics cross-checked against scikit-learn, scipy and the `krippendorff` package."""

from __future__ import annotations

import math
import time
import warnings

import krippendorff
import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from webapp.reviews import agreement as ag


def _ordinal_pairs(seed: int, n: int, levels: int = 5, noise: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    # A judge that tracks the humans with noise, like a real one.
    rng = np.random.default_rng(seed)
    human = rng.integers(0, levels, size=n).astype(float)
    judge = np.clip(np.round(human + rng.normal(0, noise, size=n)), 0, levels - 1)
    return judge, human


def _with_missing(values: np.ndarray, seed: int, share: float = 0.15) -> list[float | None]:
    rng = np.random.default_rng(seed)
    return [None if rng.random() < share else float(v) for v in values]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_sklearn(seed: int, weights: str | None) -> None:
    judge, human = _ordinal_pairs(seed, 200)
    got = ag.cohen_kappa(judge, human, weights=weights, labels=[0, 1, 2, 3, 4])  # type: ignore[arg-type]
    expected = cohen_kappa_score(human, judge, weights=weights, labels=[0, 1, 2, 3, 4])
    assert got.n == 200
    assert got.value == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_drops_missing_pairs_like_a_filtered_sklearn_call() -> None:
    judge, human = _ordinal_pairs(7, 150)
    j = _with_missing(judge, 1)
    h = _with_missing(human, 2)
    keep = [a is not None and b is not None for a, b in zip(j, h, strict=True)]
    got = ag.cohen_kappa(j, h, weights="quadratic", labels=range(5))
    expected = cohen_kappa_score(human[keep], judge[keep], weights="quadratic", labels=list(range(5)))
    assert got.n == sum(keep) < 150
    assert got.value == pytest.approx(expected, abs=1e-12)


def test_unused_scale_step_changes_weighted_kappa_only_when_labels_say_so() -> None:
    # Nobody used label 1: with the full scale 0 and 2 are two steps apart, without it one.
    judge = [0, 2, 2, 0, 3, 3, 2, 0]
    human = [0, 2, 3, 2, 3, 2, 2, 0]
    full = ag.cohen_kappa(judge, human, weights="quadratic", labels=[0, 1, 2, 3])
    observed_only = ag.cohen_kappa(judge, human, weights="quadratic")
    assert full.value == pytest.approx(
        cohen_kappa_score(human, judge, weights="quadratic", labels=[0, 1, 2, 3])
    )
    assert observed_only.value == pytest.approx(cohen_kappa_score(human, judge, weights="quadratic"))
    assert full.value != pytest.approx(observed_only.value)


def test_labels_that_miss_an_observed_value_are_refused_with_a_fix() -> None:
    with pytest.raises(ValueError, match="pass the full label set"):
        ag.cohen_kappa([0, 1, 5], [0, 1, 1], labels=[0, 1, 2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_scipy_including_ties(seed: int) -> None:
    judge, human = _ordinal_pairs(seed, 120)  # ordinal values: many ties
    rng = np.random.default_rng(seed)
    scores_j = rng.random(80)
    scores_h = np.clip(scores_j + rng.normal(0, 0.3, 80), 0, 1)
    for j, h in ((judge, human), (scores_j, scores_h)):
        assert ag.spearman(j, h).value == pytest.approx(stats.spearmanr(j, h).statistic, abs=1e-10)
        assert ag.pearson(j, h).value == pytest.approx(stats.pearsonr(j, h).statistic, abs=1e-10)
        assert ag.spearman(j, h).n == len(j)


def test_mae_bias_percent_agreement_and_confusion() -> None:
    judge, human = _ordinal_pairs(11, 300)
    assert ag.mean_absolute_error(judge, human).value == pytest.approx(np.mean(np.abs(judge - human)))
    assert ag.bias(judge, human).value == pytest.approx(np.mean(judge - human))
    assert ag.percent_agreement(judge, human).value == pytest.approx(np.mean(judge == human))
    assert ag.percent_agreement(judge, human, tolerance=1).value == pytest.approx(
        np.mean(np.abs(judge - human) <= 1)
    )
    matrix = ag.confusion_matrix(judge, human, labels=range(5))
    assert matrix.n == 300
    assert matrix.counts == sk_confusion_matrix(human, judge, labels=list(range(5))).tolist()


def test_lenient_judge_has_positive_bias() -> None:
    human = [0.0, 0.5, 0.5, 1.0, 0.0, 0.5]
    judge = [0.5, 1.0, 0.5, 1.0, 0.5, 1.0]
    assert ag.bias(judge, human).value == pytest.approx(4 * 0.5 / 6)  # four +0.5 steps over six items


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_krippendorff_alpha_matches_package_with_missing_values_and_many_raters(
    level: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, size=60)
    data = np.array([np.clip(truth + rng.integers(-1, 2, size=60), 0, 3) for _ in range(4)], dtype=float)
    data[rng.random(data.shape) < 0.25] = np.nan  # raters skip items
    got = ag.krippendorff_alpha(data, level=level)  # type: ignore[arg-type]
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert got.value == pytest.approx(expected, abs=1e-10)
    pairable = np.isfinite(data).sum(axis=0)
    # n counts items, like every other figure (issue 16, defect 7); the ratings behind them are reported apart.
    assert got.n == int((pairable >= 2).sum())
    assert got.ratings == int(pairable[pairable >= 2].sum())


def test_krippendorff_alpha_on_continuous_scores_matches_package() -> None:
    rng = np.random.default_rng(5)
    base = rng.random(40)
    data = np.vstack([base + rng.normal(0, 0.1, 40), base + rng.normal(0, 0.1, 40), base])
    data[0, :5] = np.nan
    assert ag.krippendorff_alpha(data, level="interval").value == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="interval"), abs=1e-10
    )


def test_krippendorff_accepts_none_in_python_lists() -> None:
    data = [[1, 2, 3, None, 2], [1, 2, 2, 3, None], [None, 2, 3, 3, 2]]
    as_nan = np.array([[np.nan if v is None else v for v in row] for row in data], dtype=float)
    assert ag.krippendorff_alpha(data, level="nominal").value == pytest.approx(
        krippendorff.alpha(reliability_data=as_nan, level_of_measurement="nominal")
    )


# ---- degenerate inputs: structured None with a reason, never an exception or a NaN -----------------------------


def _assert_clean(stat: ag.Stat) -> None:
    if stat.value is None:
        assert stat.reason
    else:
        assert math.isfinite(stat.value)
    for bound in (stat.ci_low, stat.ci_high):
        assert bound is None or math.isfinite(bound)


DEGENERATE = {
    "all missing": ([None, None, 1], [2, None, None]),
    "empty": ([], []),
    "one item": ([1], [1]),
    "constant, all agree": ([2, 2, 2, 2, 2], [2, 2, 2, 2, 2]),
    "constant judge": ([1, 1, 1, 1, 1, 1], [0, 1, 2, 1, 0, 2]),
    "constant human": ([0, 1, 2, 1, 0, 2], [1, 1, 1, 1, 1, 1]),
    "two items": ([0, 1], [0, 1]),
    "nan for missing": ([0.0, float("nan"), 1.0, 0.5], [0.0, 1.0, float("nan"), 0.5]),
}


@pytest.mark.parametrize("name", list(DEGENERATE))
@pytest.mark.parametrize("kind", ["ordinal", "nominal", "score"])
def test_degenerate_inputs_give_structured_values(name: str, kind: str) -> None:
    judge, human = DEGENERATE[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from a hidden division by zero either
        report = ag.agreement_report(judge, human, kind=kind, n_resamples=200)  # type: ignore[arg-type]
    for stat in (
        report.percent_agreement,
        report.cohen_kappa,
        report.weighted_kappa,
        report.krippendorff_alpha,
        report.spearman,
        report.pearson,
        report.mae,
        report.bias,
    ):
        _assert_clean(stat)
        assert stat.n <= max(report.n * 2, 0)  # alpha counts values (two per pair), the rest count pairs
    assert report.n + report.n_missing == len(judge)
    assert report.warnings  # every degenerate case is small, so the dashboard warns


def test_degenerate_reasons_match_what_reference_libraries_leave_undefined() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(cohen_kappa_score([2, 2, 2], [2, 2, 2]))
        assert math.isnan(stats.spearmanr([1, 1, 1, 1], [0, 1, 2, 3]).statistic)
    kappa = ag.cohen_kappa([2, 2, 2], [2, 2, 2])
    assert kappa.value is None and kappa.n == 3 and "single value" in (kappa.reason or "")
    rho = ag.spearman([1, 1, 1, 1], [0, 1, 2, 3])
    assert rho.value is None and "judge" in (rho.reason or "")
    alpha = ag.krippendorff_alpha([[1, 1, 1], [1, 1, 1]])
    assert alpha.value is None and alpha.n == 3 and alpha.ratings == 6
    with pytest.raises(ValueError):  # the package refuses what we report as undefined
        krippendorff.alpha(reliability_data=[[1, 1, 1], [1, 1, 1]], level_of_measurement="ordinal")
    assert ag.krippendorff_alpha([[1, None], [None, 2]]).reason == "no item was rated by at least two raters"
    assert ag.percent_agreement([2, 2, 2], [2, 2, 2]).value == 1.0


def test_perfect_agreement_with_variation_is_one_everywhere() -> None:
    values = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4] * 3
    report = ag.agreement_report(values, values, kind="ordinal", labels=range(5), n_resamples=200)
    for stat in (
        report.percent_agreement,
        report.cohen_kappa,
        report.weighted_kappa,
        report.krippendorff_alpha,
        report.spearman,
        report.pearson,
    ):
        assert stat.value == pytest.approx(1.0)
    assert report.mae.value == 0.0 and report.bias.value == 0.0


# ---- bootstrap ---------------------------------------------------------------------------------------------


def _naive_bootstrap(
    judge: np.ndarray, human: np.ndarray, fn, n_resamples: int, seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, judge.size, judge.size)
        values.append(fn(judge[idx], human[idx]))
    return tuple(np.quantile(values, [0.025, 0.975]))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        (
            "weighted_kappa_quadratic",
            lambda j, h: cohen_kappa_score(h, j, weights="quadratic", labels=list(range(5))),
        ),
        ("percent_agreement", lambda j, h: float(np.mean(j == h))),
        ("spearman", lambda j, h: stats.spearmanr(j, h).statistic),
        ("bias", lambda j, h: float(np.mean(j - h))),
    ],
)
def test_vectorised_bootstrap_agrees_with_a_naive_loop(name: str, reference) -> None:
    judge, human = _ordinal_pairs(3, 400)
    low, high, reason = ag.bootstrap_interval(judge, human, name, labels=range(5), n_resamples=2000, seed=1)  # type: ignore[arg-type]
    naive_low, naive_high = _naive_bootstrap(judge, human, reference, 400, seed=2)
    assert reason is None and low is not None and high is not None
    width = naive_high - naive_low
    assert width > 0
    # Two independent Monte Carlo runs of the same bootstrap: ends agree to a fraction of the width.
    assert low == pytest.approx(naive_low, abs=0.15 * width)
    assert high == pytest.approx(naive_high, abs=0.15 * width)
    point = reference(judge, human)
    assert low < point < high


def test_bootstrap_is_seeded() -> None:
    judge, human = _ordinal_pairs(4, 100)
    first = ag.bootstrap_interval(judge, human, "cohen_kappa", n_resamples=300, seed=9)
    assert first == ag.bootstrap_interval(judge, human, "cohen_kappa", n_resamples=300, seed=9)
    assert first != ag.bootstrap_interval(judge, human, "cohen_kappa", n_resamples=300, seed=10)


def test_bootstrap_of_continuous_scores_uses_the_index_path_and_matches_normal_theory() -> None:
    # > 2000 distinct (judge, human) cells takes the pair-index route; the mean difference has a known SE.
    rng = np.random.default_rng(8)
    human = rng.random(5000)
    judge = np.clip(human + rng.normal(0.05, 0.2, 5000), 0, 1)
    low, high, _ = ag.bootstrap_interval(judge, human, "bias", n_resamples=1000, seed=0)
    diff = judge - human
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    assert low == pytest.approx(diff.mean() - 1.96 * se, abs=0.15 * se * 3.92)
    assert high == pytest.approx(diff.mean() + 1.96 * se, abs=0.15 * se * 3.92)


def test_alpha_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(2)
    truth = rng.integers(0, 4, 200)
    data = np.vstack([np.clip(truth + rng.integers(-1, 2, 200), 0, 3) for _ in range(3)]).astype(float)
    stat = ag.krippendorff_alpha(data, level="ordinal", n_resamples=1000, seed=0)
    assert stat.ci_low is not None and stat.ci_high is not None and stat.value is not None
    assert stat.ci_low < stat.value < stat.ci_high
    assert 0.02 < stat.ci_high - stat.ci_low < 0.3


@pytest.mark.parametrize("kind", ["ordinal", "score"])
def test_full_report_on_100k_pairs_is_fast(kind: str) -> None:
    if kind == "ordinal":
        judge, human = _ordinal_pairs(0, 100_000)
    else:
        # Scores from a 5-choice scale mapped to 0..1, as the judge and the labeling form produce them.
        judge, human = (x / 4 for x in _ordinal_pairs(0, 100_000))
    start = time.process_time()  # CPU time: other jobs on a shared CI box do not count against us
    report = ag.agreement_report(judge, human, kind=kind, n_resamples=1000)  # type: ignore[arg-type]
    elapsed = time.process_time() - start
    assert report.n == 100_000
    # A continuous scale has no kappa (one kappa per criterion kind, issue 16 defect 6): alpha is its agreement figure.
    headline = report.weighted_kappa if kind == "ordinal" else report.krippendorff_alpha
    assert headline.ci_low is not None and report.spearman.ci_high is not None
    assert report.krippendorff_alpha.ci_low is not None
    assert elapsed < 5.0, f"agreement report on 100k pairs took {elapsed:.2f}s of CPU"


# ---- report details, warnings, diagnostics ---------------------------------------------------------------


def test_calibration_bins_count_and_average_per_judge_bin() -> None:
    judge = [0.0, 0.1, 0.5, 0.55, 1.0, 1.0, None]
    human = [0.0, 0.5, 0.5, 1.0, 1.0, 0.5, 1.0]
    bins = ag.calibration_bins(judge, human, bins=2)
    assert [(b.low, b.high, b.n) for b in bins] == [(0.0, 0.5, 2), (0.5, 1.0, 4)]
    assert bins[0].mean_human == pytest.approx(0.25)
    assert bins[1].mean_human == pytest.approx(0.75)
    assert ag.calibration_bins([], [], bins=3)[2].n == 0


def test_warnings_for_small_n_and_one_sided_labels() -> None:
    human = [1] * 19 + [0]
    judge = [1] * 10 + [0] * 10
    codes = {w.code for w in ag.label_warnings(judge, human)}
    assert codes == {"one_sided_human"}
    codes = {w.code for w in ag.label_warnings(judge[:10], human[:10])}
    assert codes == {"small_n", "one_sided_human", "one_sided_judge"}
    balanced_j, balanced_h = _ordinal_pairs(0, 50)
    assert ag.label_warnings(balanced_j, balanced_h) == []


def test_report_kinds() -> None:
    judge, human = _ordinal_pairs(1, 60)
    nominal = ag.agreement_report(judge, human, kind="nominal", n_resamples=0)
    assert nominal.weighted_kappa.value is None and nominal.confusion is not None
    assert nominal.krippendorff_alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=np.vstack([judge, human]), level_of_measurement="nominal")
    )
    score = ag.agreement_report(judge / 4, human / 4, kind="score", n_resamples=0)
    assert score.confusion is None and sum(b.n for b in score.calibration) == 60
    assert score.krippendorff_alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=np.vstack([judge, human]) / 4, level_of_measurement="interval")
    )


def test_length_score_correlation_flags_a_verbosity_loving_judge() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, 100)
    human = rng.random(100)
    judge = np.clip(lengths / 400 + rng.normal(0, 0.05, 100), 0, 1)
    result = ag.length_score_correlation(lengths, judge, human)
    assert result.judge.value == pytest.approx(stats.spearmanr(lengths, judge).statistic)
    assert result.human is not None and result.human.n == 100
    assert result.difference is not None and result.difference > 0.5


def test_position_swap_consistency() -> None:
    first = ["A", "A", "B", "tie", "A", None]
    swapped = ["B", "A", "A", "tie", "B", "A"]
    report = ag.position_swap_consistency(first, swapped)  # type: ignore[arg-type]
    assert report.n == 5
    assert report.consistency.value == pytest.approx(4 / 5)  # pair 2 picked position A both times
    # Ten verdicts, two ties; of the eight decided, five picked position A.
    assert report.first_position_rate.value == pytest.approx(5 / 8) and report.first_position_rate.n == 8
    assert report.tie_rate.value == pytest.approx(2 / 10)
    empty = ag.position_swap_consistency([None], ["A"])
    assert empty.n == 0 and empty.consistency.value is None and empty.consistency.reason
    with pytest.raises(ValueError, match="'A', 'B' or 'tie'"):
        ag.position_swap_consistency(["left"], ["A"])  # type: ignore[list-item]


def test_continuous_scores_on_100k_pairs_skip_matrices_with_a_reason() -> None:
    rng = np.random.default_rng(0)
    human = rng.random(100_000)
    judge = np.clip(human + rng.normal(0, 0.2, 100_000), 0, 1)
    start = time.process_time()  # CPU time: other jobs on a shared CI box do not count against us
    # 100k distinct values leave nothing to compress, so each resample touches every pair: fewer resamples here.
    report = ag.agreement_report(judge, human, kind="score", n_resamples=200)
    elapsed = time.process_time() - start
    assert report.cohen_kappa.value is None and "continuous scale" in (report.cohen_kappa.reason or "")
    assert report.pearson.value == pytest.approx(stats.pearsonr(judge, human).statistic, abs=1e-10)
    # The package itself needs ~34 GiB here, so check against it on a slice of the same data.
    sliced = ag.krippendorff_alpha(np.vstack([judge, human])[:, :150], level="interval")
    assert sliced.value == pytest.approx(
        krippendorff.alpha(
            reliability_data=np.vstack([judge, human])[:, :150], level_of_measurement="interval"
        )
    )
    assert report.pearson.ci_low is not None and report.krippendorff_alpha.ci_low is not None
    assert elapsed < 15.0, f"continuous report on 100k pairs took {elapsed:.2f}s of CPU"


@pytest.mark.parametrize("kind", ["ordinal", "score", "nominal"])
def test_report_on_aggregated_pairs_equals_the_report_on_items(kind: str) -> None:
    # The dashboard hands over (judge, human, count) rows from SQL; every figure must be what the items give.
    judge, human = _ordinal_pairs(21, 400, levels=3)
    if kind == "score":
        judge, human = judge / 2, human / 2
    judge_with_gap = list(judge) + [None, 1.0]
    human_with_gap = list(human) + [1.0, None]
    items = ag.agreement_report(judge_with_gap, human_with_gap, kind=kind, n_resamples=200, seed=3)  # type: ignore[arg-type]
    pairs: dict[tuple[float | None, float | None], int] = {}
    for j, h in zip(judge_with_gap, human_with_gap, strict=True):
        pairs[(j, h)] = pairs.get((j, h), 0) + 1
    keys = list(pairs)[::-1]  # any order
    cells = ag.agreement_report([k[0] for k in keys], [k[1] for k in keys], counts=[pairs[k] for k in keys],
                                kind=kind, n_resamples=200, seed=3)  # type: ignore[arg-type]
    assert (cells.n, cells.n_missing) == (items.n, items.n_missing) == (400, 2)
    for name in ("percent_agreement", "cohen_kappa", "weighted_kappa", "krippendorff_alpha", "spearman", "pearson",
                 "mae", "bias"):
        a, b = getattr(items, name), getattr(cells, name)
        assert (a.value is None) == (b.value is None) and a.n == b.n, name
        if a.value is not None:
            assert b.value == pytest.approx(a.value, abs=1e-9), name
            assert (b.ci_low, b.ci_high) == pytest.approx((a.ci_low, a.ci_high), abs=1e-9), name
    assert cells.confusion == items.confusion and cells.warnings == items.warnings
    assert len(cells.calibration) == len(items.calibration)
    for a_bin, b_bin in zip(items.calibration, cells.calibration, strict=True):
        assert b_bin.n == a_bin.n
        assert (b_bin.mean_judge is None) == (a_bin.mean_judge is None)
        if a_bin.n:
            assert (b_bin.mean_judge, b_bin.mean_human) == pytest.approx((a_bin.mean_judge, a_bin.mean_human))


def test_alpha_with_item_counts_equals_alpha_on_repeated_items() -> None:
    patterns = np.array([[0, 1, 2, 2, np.nan], [0, 2, 2, 1, 1], [np.nan, 1, 2, 2, 0]])
    counts = [3, 1, 5, 2, 4]
    expanded = np.repeat(patterns, counts, axis=1)
    for level in ("nominal", "ordinal", "interval"):
        a = ag.krippendorff_alpha(expanded, level=level, n_resamples=100, seed=1)  # type: ignore[arg-type]
        b = ag.krippendorff_alpha(patterns, level=level, n_resamples=100, seed=1, item_counts=counts)  # type: ignore[arg-type]
        assert b.n == a.n and b.value == pytest.approx(a.value, abs=1e-12)
        assert (b.ci_low, b.ci_high) == pytest.approx((a.ci_low, a.ci_high), abs=1e-12)
