"""Judge–human agreement statistics: pure functions over plain arrays (numpy only, no Django).

The agreement dashboard, the align loop and the training launcher's calibration gate all read these numbers, so
they follow three rules:

* Every result carries the n it was computed on; the app never shows a number without it.
* Degenerate input (nothing paired, one item, constant labels, everyone agrees on one value) never raises and never
  divides by zero: the value is ``None`` and ``reason`` says why, in words a user can act on.
* Bootstrap intervals are seeded and vectorised. Paired data is compressed into its distinct (judge, human) cells
  first, so a resample is a vector of cell counts instead of a copy of 100k pairs; every statistic here is a function
  of those counts.

Inputs are sequences with ``None`` or NaN for a missing value. Ordinal values are choice indices (0, 1, 2, ...);
scores are floats in 0..1. A "pair" exists for an item only where both the judge and the human value are present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Kind = Literal["nominal", "ordinal", "score"]
KappaWeights = Literal["linear", "quadratic"] | None
AlphaLevel = Literal["nominal", "ordinal", "interval"]
PairwiseVerdict = Literal["A", "B", "tie"]

SMALL_N = 20
ONE_SIDED_SHARE = 0.9
MIN_CORRELATION_PAIRS = 3
# Kappa, AC1, PABAK and alpha on fewer items are a coin toss shown with three decimals: "—" below this.
MIN_CHANCE_CORRECTED_ITEMS = 3
# Kappa, confusion matrices and nominal/ordinal alpha are for choices; beyond this many distinct values the input is
# a continuous score and the matrices would not fit in memory.
MAX_CATEGORIES = 100
# Bound the (resamples × cells) matrix held in memory at once (~16 MB of float64).
_BOOTSTRAP_CELLS_PER_CHUNK = 2_000_000
# Above this many distinct cells, drawing pair indices and counting them is cheaper than a multinomial draw.
_MULTINOMIAL_MAX_CELLS = 2_000


@dataclass(frozen=True)
class Stat:
    """One statistic: its value (None when undefined), the n behind it, why it is undefined, and its interval."""

    value: float | None
    n: int
    reason: str | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    ci_reason: str | None = None
    # Bootstrap resamples in which the statistic was undefined (e.g. one side constant); None without a bootstrap.
    undefined_resamples: int | None = None
    # Ratings behind the figure where that differs from the items (alpha over several raters).
    ratings: int | None = None


@dataclass(frozen=True)
class ClassRecall:
    """One choice seen as a class: of the items the judge put in it, the share humans put there too (precision),
    and of the items humans put in it, the share the judge found (recall)."""

    label: float
    support: int  # items humans put in this class
    predicted: int  # items the judge put in this class
    precision: float | None
    recall: float | None


@dataclass(frozen=True)
class AgreementWarning:
    code: Literal["small_n", "one_sided_human", "one_sided_judge", "no_pairs"]
    message: str


@dataclass(frozen=True)
class ConfusionMatrix:
    """Counts of (human label, judge label); rows are human labels, columns judge labels, both in ``labels`` order."""

    labels: list[float]
    counts: list[list[int]]
    n: int


@dataclass(frozen=True)
class CalibrationBin:
    """Judge scores in [low, high) (the last bin includes its upper edge) and the mean human score of those items."""

    low: float
    high: float
    n: int
    mean_judge: float | None
    mean_human: float | None
    # 95 % percentile bootstrap of the bin's mean human value, the bin's items resampled (None below 2 items).
    human_low: float | None = None
    human_high: float | None = None


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float | None:
    """ECE: the item-weighted mean gap |mean judge − mean human| over the bins; None without items."""
    total = sum(b.n for b in bins)
    if not total:
        return None
    return float(sum(b.n * abs(b.mean_judge - b.mean_human) for b in bins
                     if b.n and b.mean_judge is not None and b.mean_human is not None) / total)


@dataclass(frozen=True)
class AgreementReport:
    """Everything the agreement dashboard shows for one rubric version × judge × criterion."""

    kind: Kind
    n: int
    n_missing: int
    percent_agreement: Stat
    cohen_kappa: Stat
    weighted_kappa: Stat
    krippendorff_alpha: Stat
    gwet_ac1: Stat
    pabak: Stat
    spearman: Stat
    pearson: Stat
    mae: Stat
    bias: Stat
    confusion: ConfusionMatrix | None
    calibration: list[CalibrationBin]
    warnings: list[AgreementWarning] = field(default_factory=list)
    per_class: list[ClassRecall] = field(default_factory=list)


@dataclass(frozen=True)
class LengthBias:
    """Spearman correlation of completion length with the judge's and the humans' scores on the same items.

    A judge whose length correlation clearly exceeds the humans' rewards verbosity rather than quality.
    """

    judge: Stat
    human: Stat | None
    difference: float | None
    # 95 % percentile bootstrap of the difference, items resampled (judge and human ρ from the same resample).
    difference_low: float | None = None
    difference_high: float | None = None
    difference_reason: str | None = None


@dataclass(frozen=True)
class PositionSwapReport:
    """Pairwise judging with both orders: how often the verdict survives swapping the two rollouts.

    ``first_position_rate`` is the share of non-tie verdicts that picked whichever rollout was shown first; an
    unbiased judge sits near 0.5.
    """

    n: int
    consistency: Stat
    first_position_rate: Stat
    tie_rate: Stat


# --------------------------------------------------------------------------------------------------------------
# The human value of an item: the one rule the dashboard, the align loop, the bias page and the training gate share


def human_value(index_sum: int, raters: int) -> int | None:
    """The choice (or integer scale point) that stands for an item's labels: their mean, rounded to the nearest
    choice, in exact integer arithmetic. ``None`` when the mean falls exactly halfway between two choices (a split:
    1–1 on a yes/no question, 3 and 4 on a scale): no rounding direction is neutral, so the item is left out of the
    paired figures and counted as a split instead.

    ``index_sum``: the sum of the labels' choice indices (0 = first choice); ``raters``: how many labels.
    """
    if raters <= 0:
        raise ValueError(f"an item needs at least one label to have a human value; got {raters}.")
    quotient, remainder = divmod(int(index_sum), int(raters))
    twice = 2 * remainder
    if twice == raters:
        return None
    return quotient + (1 if twice > raters else 0)


# --------------------------------------------------------------------------------------------------------------
# Input handling


def _as_float(values: Sequence[float | int | None] | np.ndarray) -> np.ndarray:
    # None -> NaN so "missing" has one representation from here on.
    if isinstance(values, np.ndarray):
        return values.astype(float, copy=False).ravel()
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def paired(
    judge: Sequence[float | int | None] | np.ndarray, human: Sequence[float | int | None] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the judge and human values of the items where both are present."""
    j = _as_float(judge)
    h = _as_float(human)
    if j.shape != h.shape:
        raise ValueError(f"judge and human must have one value per item; got {j.size} and {h.size} values.")
    keep = ~(np.isnan(j) | np.isnan(h))
    return j[keep], h[keep]


# --------------------------------------------------------------------------------------------------------------
# Paired data as weighted cells: every paired statistic is a function of cell counts, which is what makes the
# bootstrap a cheap matrix operation.


@dataclass(frozen=True)
class _Cells:
    judge: np.ndarray  # (m,) distinct judge value of each cell
    human: np.ndarray  # (m,) distinct human value of each cell
    counts: np.ndarray  # (m,) how many pairs fall in the cell
    n: int


def _cells(j: np.ndarray, h: np.ndarray, w: np.ndarray | None = None) -> _Cells:
    """Distinct (judge, human) pairs sorted by judge then human value, with how many items fall in each.

    ``w``: how many items each input pair stands for (already aggregated data, e.g. GROUP BY in SQL).
    """
    if w is not None:
        nonzero = w > 0
        j, h, w = j[nonzero], h[nonzero], w[nonzero]
    if j.size == 0:
        empty = np.array([], dtype=float)
        return _Cells(empty, empty, empty, 0)
    # Two 1-D uniques and an integer code: much cheaper than np.unique(axis=0) on 100k rows.
    judge_values, judge_codes = np.unique(j, return_inverse=True)
    human_values, human_codes = np.unique(h, return_inverse=True)
    codes, inverse = np.unique(judge_codes.ravel() * human_values.size + human_codes.ravel(), return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=w, minlength=codes.size).astype(float)
    return _Cells(
        judge_values[codes // human_values.size], human_values[codes % human_values.size], counts,
        int(round(counts.sum())),
    )


def _paired_cells(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    counts: Sequence[float] | np.ndarray | None = None,
) -> tuple[_Cells, int]:
    """The pairs where both values are present, as cells; and how many items had a value missing."""
    j = _as_float(judge)
    h = _as_float(human)
    if j.shape != h.shape:
        raise ValueError(f"judge and human must have one value per item; got {j.size} and {h.size} values.")
    w = None if counts is None else _as_float(counts)
    if w is not None and w.shape != j.shape:
        raise ValueError(f"counts must have one entry per (judge, human) pair; got {w.size} for {j.size} pairs.")
    keep = ~(np.isnan(j) | np.isnan(h))
    missing = int((~keep).sum()) if w is None else int(round(w[~keep].sum()))
    return _cells(j[keep], h[keep], None if w is None else w[keep]), missing


def _label_index(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.searchsorted(labels, values)


def _kappa_from_counts(counts: np.ndarray, codes: np.ndarray, k: int, weights: KappaWeights) -> np.ndarray:
    """Cohen's kappa for each row of ``counts`` (resamples × cells); NaN where the expected disagreement is 0."""
    b = counts.shape[0]
    observed = np.zeros((b, k * k))
    observed[:, codes] = counts
    observed = observed.reshape(b, k, k)
    total = observed.sum(axis=(1, 2))
    rows = observed.sum(axis=2)  # human marginals
    cols = observed.sum(axis=1)  # judge marginals
    expected = rows[:, :, None] * cols[:, None, :] / np.where(total == 0, 1, total)[:, None, None]
    i, jj = np.indices((k, k))
    if weights is None:
        w = (i != jj).astype(float)
    elif weights == "linear":
        w = np.abs(i - jj).astype(float)
    else:
        w = ((i - jj) ** 2).astype(float)
    num = (w * observed).sum(axis=(1, 2))
    den = (w * expected).sum(axis=(1, 2))
    # A side that used one value makes kappa 0 (or 0/0) whatever the other side did: structurally empty.
    one_sided = ((rows > 0).sum(axis=1) <= 1) | ((cols > 0).sum(axis=1) <= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((den > 0) & ~one_sided, 1.0 - num / den, np.nan)


def _ac1_pabak_from_counts(counts: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Gwet's AC1 and PABAK for each row of ``counts`` (resamples × cells) over ``k`` categories.

    AC1: (pa − pe) / (1 − pe) with pe = Σ π_q (1 − π_q) / (k − 1), π_q the share of all ratings (judge and human)
    in category q. PABAK: (k · pa − 1) / (k − 1), i.e. kappa with chance agreement fixed at 1/k (Brennan–Prediger).
    """
    b = counts.shape[0]
    observed = np.zeros((b, k * k))
    observed[:, codes] = counts
    observed = observed.reshape(b, k, k)
    total = observed.sum(axis=(1, 2))
    safe = np.where(total == 0, 1, total)
    pa = np.einsum("bii->b", observed) / safe
    pi = (observed.sum(axis=2) + observed.sum(axis=1)) / (2.0 * safe)[:, None]
    pe = (pi * (1.0 - pi)).sum(axis=1) / (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ac1 = np.where(total > 0, (pa - pe) / (1.0 - pe), np.nan)
        pabak = np.where(total > 0, (k * pa - 1.0) / (k - 1), np.nan)
    return ac1, pabak


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r per row of weights ``w`` (resamples × cells); x and y are per cell, or per row-and-cell.

    Centred moments: each row's own weighted means are subtracted before the products are summed, so a judge of
    0.5 + 1e-7 · noise keeps its variance instead of losing it to cancellation against 0.25.
    """
    total = w.sum(axis=1)
    safe_total = np.where(total == 0, 1, total)
    xs = np.broadcast_to(x, w.shape)
    ys = np.broadcast_to(y, w.shape)
    dx = xs - (np.einsum("ij,ij->i", w, xs) / safe_total)[:, None]
    dy = ys - (np.einsum("ij,ij->i", w, ys) / safe_total)[:, None]
    wdx = w * dx
    cov = np.einsum("ij,ij->i", wdx, dy)
    vx = np.einsum("ij,ij->i", wdx, dx)
    vy = np.einsum("ij,ij->i", w * dy, dy)
    # A side that is constant within the resample: its values are all equal among the cells drawn.
    present = w > 0
    big = np.finfo(float).max
    x_const = np.where(present, xs, big).min(axis=1) == np.where(present, xs, -big).max(axis=1)
    y_const = np.where(present, ys, big).min(axis=1) == np.where(present, ys, -big).max(axis=1)
    defined = ~x_const & ~y_const & (vx > 0) & (vy > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(defined, cov / (np.sqrt(vx) * np.sqrt(vy)), np.nan)
    return np.clip(r, -1.0, 1.0)


def _midranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average (tie-aware) ranks of each cell's value, per row of weights ``w`` (resamples × cells)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    is_start = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    already_sorted = bool(np.all(order == np.arange(order.size)))
    # Continuous scores have one cell per value and cells come sorted by judge value: skip the regrouping passes,
    # which dominate the cost on 100k distinct scores.
    w_sorted = w if already_sorted else w[:, order]
    if is_start.all():
        per_value = w_sorted
        group_of_sorted = np.arange(order.size)
    else:
        per_value = np.add.reduceat(w_sorted, np.flatnonzero(is_start), axis=1)  # resamples × distinct values
        group_of_sorted = np.cumsum(is_start) - 1
    mid = np.cumsum(per_value, axis=1) - (per_value - 1.0) / 2.0
    if already_sorted and is_start.all():
        return mid
    group = np.empty_like(group_of_sorted)
    group[order] = group_of_sorted
    return mid[:, group]


_PairedStatistic = Callable[[np.ndarray], np.ndarray]


def _paired_statistic(
    name: str, cells: _Cells, *, labels: np.ndarray | None, tolerance: float
) -> _PairedStatistic:
    """A vectorised function from cell counts (resamples × cells) to the statistic per resample."""
    jv, hv = cells.judge, cells.human
    if name == "percent_agreement":
        agree = (np.abs(jv - hv) <= tolerance).astype(float)
        return lambda w: (w @ agree) / w.sum(axis=1)
    if name == "mae":
        diff = np.abs(jv - hv)
        return lambda w: (w @ diff) / w.sum(axis=1)
    if name == "bias":
        diff = jv - hv
        return lambda w: (w @ diff) / w.sum(axis=1)
    if name == "pearson":
        return lambda w: _weighted_pearson(jv, hv, w)
    if name == "spearman":
        return lambda w: _weighted_pearson(_midranks(jv, w), _midranks(hv, w), w)
    if name in ("cohen_kappa", "weighted_kappa_linear", "weighted_kappa_quadratic"):
        assert labels is not None
        k = labels.size
        codes = _label_index(hv, labels) * k + _label_index(jv, labels)
        weights: KappaWeights = {
            "cohen_kappa": None,
            "weighted_kappa_linear": "linear",
            "weighted_kappa_quadratic": "quadratic",
        }[name]  # type: ignore[assignment]
        return lambda w: _kappa_from_counts(w, codes, k, weights)
    if name in ("gwet_ac1", "pabak"):
        assert labels is not None
        k = labels.size
        codes = _label_index(hv, labels) * k + _label_index(jv, labels)
        position = 0 if name == "gwet_ac1" else 1
        return lambda w: _ac1_pabak_from_counts(w, codes, k)[position]
    raise ValueError(f"Unknown statistic {name!r}.")


def _resampled_counts(
    counts: np.ndarray, n_resamples: int, rng: np.random.Generator, *, width: int = 0
) -> Iterator[np.ndarray]:
    """Yield chunks (resamples × categories) of bootstrap counts: n = sum(counts) draws with replacement.

    Categories are paired cells or rated items; resampling the underlying rows is the same as drawing category
    counts from a multinomial with the observed shares.
    """
    m = counts.size
    n = int(counts.sum())
    use_multinomial = m <= _MULTINOMIAL_MAX_CELLS
    # The widest matrix per resample is the category counts (multinomial) or the drawn row indices (n).
    # ``width``: the widest per-resample array the caller builds from a chunk.
    chunk = max(
        1, min(n_resamples, _BOOTSTRAP_CELLS_PER_CHUNK // max(width, m if use_multinomial else max(m, n)))
    )
    category_of_row = None if use_multinomial else np.repeat(np.arange(m), counts.astype(int))
    done = 0
    while done < n_resamples:
        size = min(chunk, n_resamples - done)
        if category_of_row is None:
            yield rng.multinomial(n, counts / n, size=size).astype(float)
        else:
            picks = category_of_row[rng.integers(0, n, size=(size, n))]
            offsets = (np.arange(size) * m)[:, None]
            yield np.bincount((picks + offsets).ravel(), minlength=size * m).reshape(size, m).astype(float)
        done += size


def _percentile_interval(
    samples: np.ndarray, confidence: float, n_resamples: int
) -> tuple[float | None, float | None, str | None, int]:
    """(low, high, reason when there is no interval, resamples in which the statistic was undefined)."""
    finite = samples[np.isfinite(samples)]
    undefined = int(n_resamples - finite.size)
    # When many resamples have no defined value the interval would describe a different population.
    if finite.size < 0.9 * n_resamples:
        return (
            None,
            None,
            (
                f"the statistic is undefined in {undefined} of {n_resamples} bootstrap resamples "
                "(too few items or too little variation)"
            ),
            undefined,
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high), None, undefined


def bootstrap_interval(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    statistic: Literal[
        "percent_agreement",
        "cohen_kappa",
        "weighted_kappa_linear",
        "weighted_kappa_quadratic",
        "pearson",
        "spearman",
        "mae",
        "bias",
        "gwet_ac1",
        "pabak",
    ],
    *,
    labels: Sequence[float] | None = None,
    tolerance: float = 0.0,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None, str | None]:
    """Percentile bootstrap interval of a paired statistic over items: (low, high, reason when None)."""
    return _bootstrap_paired(
        _paired_cells(judge, human)[0],
        [statistic],
        labels=labels,
        tolerance=tolerance,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )[statistic][:3]


Interval = tuple


def _bootstrap_paired(
    cells: _Cells,
    statistics: Sequence[str],
    *,
    labels: Sequence[float] | None,
    tolerance: float,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Interval]:
    # One set of resamples serves every statistic: drawing them is the expensive part for continuous scores.
    if cells.n < 2:
        return {
            name: (None, None, f"needs at least 2 paired items for an interval, has {cells.n}")
            for name in statistics
        }
    result: dict[str, Interval] = {}
    fns: dict[str, _PairedStatistic] = {}
    width = 0
    for name in statistics:
        label_array = (
            _labels(cells.judge, cells.human, labels) if "kappa" in name or name in ("gwet_ac1", "pabak") else None
        )
        if label_array is not None and label_array.size > MAX_CATEGORIES:
            result[name] = (None, None, _too_many_categories(label_array.size))
            continue
        if label_array is not None:
            width = max(width, 4 * label_array.size**2)
        fns[name] = _paired_statistic(name, cells, labels=label_array, tolerance=tolerance)
    if fns:
        rng = np.random.default_rng(seed)
        samples: dict[str, list[np.ndarray]] = {name: [] for name in fns}
        for w in _resampled_counts(cells.counts, n_resamples, rng, width=width):
            for name, fn in fns.items():
                samples[name].append(fn(w))
        for name in fns:
            result[name] = _percentile_interval(np.concatenate(samples[name]), confidence, n_resamples)
    return result


def _with_interval(stat: Stat, interval: tuple) -> Stat:
    if stat.value is None:
        return stat
    low, high, reason, *rest = interval
    return Stat(stat.value, stat.n, stat.reason, low, high, reason, rest[0] if rest else None, stat.ratings)


# --------------------------------------------------------------------------------------------------------------
# Point statistics on paired data


def _labels(j: np.ndarray, h: np.ndarray, labels: Sequence[float] | None) -> np.ndarray:
    observed = np.union1d(j, h)
    if labels is None:
        return observed
    given = np.unique(np.asarray(labels, dtype=float))
    outside = np.setdiff1d(observed, given)
    if outside.size:
        raise ValueError(
            f"values {outside.tolist()} are not among labels {given.tolist()}; pass the full label set."
        )
    return given


def _too_many_categories(count: int) -> str:
    return (
        f"kappa needs discrete labels; these values take {count} distinct values (more than {MAX_CATEGORIES}): "
        "use correlations, MAE and interval alpha, or bin the scores"
    )


def percent_agreement(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    tolerance: float = 0.0,
    counts: Sequence[float] | np.ndarray | None = None,
) -> Stat:
    """Share of paired items where |judge − human| ≤ tolerance (0 = exact match, for choice indices). ``counts``: how
    many items each (judge, human) pair stands for, for data already aggregated."""
    return _percent_agreement(_paired_cells(judge, human, counts)[0], tolerance)


_NO_PAIRS = "no item has both a judge and a human value"


def _weighted_mean(cells: _Cells, values: np.ndarray) -> float:
    return float(cells.counts @ values / cells.counts.sum())


def _percent_agreement(cells: _Cells, tolerance: float) -> Stat:
    if cells.n == 0:
        return Stat(None, 0, _NO_PAIRS)
    return Stat(_weighted_mean(cells, (np.abs(cells.judge - cells.human) <= tolerance).astype(float)), cells.n)


def cohen_kappa(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    weights: KappaWeights = None,
    labels: Sequence[float] | None = None,
    counts: Sequence[float] | np.ndarray | None = None,
) -> Stat:
    """Cohen's kappa; ``weights="quadratic"`` for ordinal choices. ``counts``: items per (judge, human) pair,
    for data already aggregated.

    Weights use label positions, as scikit-learn does: pass the full ordinal scale as ``labels`` so a scale step
    that nobody used still counts as a step.
    """
    return _cohen_kappa(_paired_cells(judge, human, counts)[0], weights, labels)


def _few_items(cells: _Cells, what: str) -> Stat | None:
    if cells.n == 0:
        return Stat(None, 0, _NO_PAIRS)
    if cells.n < MIN_CHANCE_CORRECTED_ITEMS:
        return Stat(None, cells.n, f"{what} needs at least {MIN_CHANCE_CORRECTED_ITEMS} paired items, has {cells.n}")
    return None


def _one_sided(cells: _Cells) -> str | None:
    """Why kappa or alpha is structurally empty here: a side that gave every item the same value."""
    judge_constant = np.unique(cells.judge).size <= 1
    human_constant = np.unique(cells.human).size <= 1
    if judge_constant and human_constant:
        return "judge and humans each used a single value, so chance agreement is total (0/0)"
    if judge_constant or human_constant:
        who = "judge" if judge_constant else "humans"
        return f"the {who} gave every item the same value, so it is 0 by construction and says nothing"
    return None


def _cohen_kappa(cells: _Cells, weights: KappaWeights, labels: Sequence[float] | None) -> Stat:
    few = _few_items(cells, "kappa")
    if few is not None:
        return few
    label_array = _labels(cells.judge, cells.human, labels)
    if label_array.size > MAX_CATEGORIES:
        return Stat(None, cells.n, _too_many_categories(label_array.size))
    one_sided = _one_sided(cells)
    if one_sided is not None:
        return Stat(None, cells.n, f"kappa is undefined: {one_sided}")
    codes = _label_index(cells.human, label_array) * label_array.size + _label_index(cells.judge, label_array)
    value = _kappa_from_counts(cells.counts[None, :], codes, label_array.size, weights)[0]
    if not np.isfinite(value):
        return Stat(None, cells.n, "kappa is undefined for these values")
    return Stat(float(value), cells.n)


def _ac1_pabak(cells: _Cells, labels: Sequence[float] | None) -> tuple[Stat, Stat]:
    """Gwet's AC1 and PABAK over the criterion's categories (``labels``: the full choice list)."""
    few = _few_items(cells, "AC1 and PABAK")
    if few is not None:
        return few, few
    label_array = _labels(cells.judge, cells.human, labels)
    if label_array.size > MAX_CATEGORIES:
        reason = _too_many_categories(label_array.size)
        return Stat(None, cells.n, reason), Stat(None, cells.n, reason)
    if label_array.size < 2:
        reason = "needs a criterion with at least two choices"
        return Stat(None, cells.n, reason), Stat(None, cells.n, reason)
    codes = _label_index(cells.human, label_array) * label_array.size + _label_index(cells.judge, label_array)
    ac1, pabak = _ac1_pabak_from_counts(cells.counts[None, :], codes, label_array.size)
    return Stat(float(ac1[0]), cells.n), Stat(float(pabak[0]), cells.n)


def gwet_ac1(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    labels: Sequence[float] | None = None,
    counts: Sequence[float] | np.ndarray | None = None,
) -> Stat:
    """Gwet's AC1 (identity weights). Pass every choice as ``labels``: chance agreement depends on how many exist."""
    return _ac1_pabak(_paired_cells(judge, human, counts)[0], labels)[0]


def pabak(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    labels: Sequence[float] | None = None,
    counts: Sequence[float] | np.ndarray | None = None,
) -> Stat:
    """Prevalence- and bias-adjusted kappa, (k · observed agreement − 1) / (k − 1) over k = len(labels)."""
    return _ac1_pabak(_paired_cells(judge, human, counts)[0], labels)[1]


def per_class_recall(cells_or_judge: Any, human: Any = None, *, labels: Sequence[float] | None = None,
                     counts: Sequence[float] | np.ndarray | None = None) -> list[ClassRecall]:
    """Per choice: precision (share of the judge's picks humans agree with) and recall (share of the humans'
    picks the judge found). ``None`` where the class was never picked by that side."""
    cells = cells_or_judge if isinstance(cells_or_judge, _Cells) else _paired_cells(cells_or_judge, human, counts)[0]
    confusion = _confusion_matrix(cells, labels)
    matrix = np.array(confusion.counts, dtype=float).reshape(len(confusion.labels), len(confusion.labels))
    result = []
    for q, label in enumerate(confusion.labels):
        support, predicted, hit = int(matrix[q].sum()), int(matrix[:, q].sum()), matrix[q, q]
        result.append(ClassRecall(label, support, predicted, float(hit / predicted) if predicted else None,
                                  float(hit / support) if support else None))
    return result


def _correlation(cells: _Cells, name: str) -> Stat:
    n = cells.n
    if n < MIN_CORRELATION_PAIRS:
        return Stat(None, n, f"{name} needs at least {MIN_CORRELATION_PAIRS} paired items, has {n}")
    if np.ptp(cells.judge) == 0 or np.ptp(cells.human) == 0:
        who = "judge" if np.ptp(cells.judge) == 0 else "human"
        return Stat(None, n, f"{name} is undefined: every {who} value is the same")
    fn = _paired_statistic(name, cells, labels=None, tolerance=0.0)
    value = fn(cells.counts[None, :])[0]
    if not np.isfinite(value):
        return Stat(None, n, f"{name} is undefined for these values")
    return Stat(float(value), n)


def pearson(
    judge: Sequence[float | int | None] | np.ndarray, human: Sequence[float | int | None] | np.ndarray
) -> Stat:
    return _correlation(_paired_cells(judge, human)[0], "pearson")


def spearman(
    judge: Sequence[float | int | None] | np.ndarray, human: Sequence[float | int | None] | np.ndarray
) -> Stat:
    return _correlation(_paired_cells(judge, human)[0], "spearman")


def mean_absolute_error(
    judge: Sequence[float | int | None] | np.ndarray, human: Sequence[float | int | None] | np.ndarray
) -> Stat:
    return _mean_absolute_error(_paired_cells(judge, human)[0])


def _mean_absolute_error(cells: _Cells) -> Stat:
    if cells.n == 0:
        return Stat(None, 0, _NO_PAIRS)
    return Stat(_weighted_mean(cells, np.abs(cells.judge - cells.human)), cells.n)


def bias(
    judge: Sequence[float | int | None] | np.ndarray, human: Sequence[float | int | None] | np.ndarray
) -> Stat:
    """Mean judge − human: positive means the judge is more lenient than the humans."""
    return _bias(_paired_cells(judge, human)[0])


def _bias(cells: _Cells) -> Stat:
    if cells.n == 0:
        return Stat(None, 0, _NO_PAIRS)
    return Stat(_weighted_mean(cells, cells.judge - cells.human), cells.n)


def confusion_matrix(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    labels: Sequence[float] | None = None,
) -> ConfusionMatrix:
    return _confusion_matrix(_paired_cells(judge, human)[0], labels)


def _confusion_matrix(cells: _Cells, labels: Sequence[float] | None) -> ConfusionMatrix:
    label_array = _labels(cells.judge, cells.human, labels)
    k = label_array.size
    if k > MAX_CATEGORIES:
        raise ValueError(
            f"a confusion matrix needs discrete labels; got {k} distinct values. Bin the scores first."
        )
    counts = np.zeros((k, k), dtype=float)
    if cells.n:
        np.add.at(counts, (_label_index(cells.human, label_array), _label_index(cells.judge, label_array)), cells.counts)
    return ConfusionMatrix([float(x) for x in label_array], np.rint(counts).astype(int).tolist(), cells.n)


def calibration_bins(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    bins: int | Sequence[float] = 5,
    score_range: tuple[float, float] = (0.0, 1.0),
    counts: Sequence[float] | np.ndarray | None = None,
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[CalibrationBin]:
    """Mean human score per judge-score bin, for the calibration plot; empty bins are kept with n=0. With
    ``n_resamples`` each bin's mean human value gets a percentile bootstrap interval over the bin's items."""
    return _calibration_bins(_paired_cells(judge, human, counts)[0], bins, score_range, n_resamples=n_resamples,
                             confidence=confidence, seed=seed)


def _calibration_bins(
    cells: _Cells, bins: int | Sequence[float], score_range: tuple[float, float] = (0.0, 1.0), *,
    n_resamples: int = 0, confidence: float = 0.95, seed: int = 0,
) -> list[CalibrationBin]:
    j, h, w = cells.judge, cells.human, cells.counts
    # Edges as lo + (hi − lo) · b / bins with one correctly rounded division, so a score of 3/5 or 6/10 and the
    # edge 0.6 are the same float and the score opens the upper bin; linspace's lo + b·step lands an ulp above.
    edges = (
        score_range[0] + (score_range[1] - score_range[0]) * (np.arange(int(bins) + 1) / int(bins))
        if isinstance(bins, int)
        else np.asarray(bins, dtype=float)
    )
    if edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("calibration bins need at least 2 increasing edges, e.g. bins=5 or [0, 0.5, 1].")
    # Right edge closed on the last bin so a perfect 1.0 lands in it instead of falling off the end.
    index = np.clip(np.searchsorted(edges, j, side="right") - 1, 0, edges.size - 2)
    inside = (j >= edges[0]) & (j <= edges[-1])
    result = []
    for b in range(edges.size - 1):
        mask = inside & (index == b)
        weight = float(w[mask].sum())
        low = high = None
        if n_resamples > 0 and weight >= 2:
            rng = np.random.default_rng(seed + b)
            samples = np.concatenate([(c @ h[mask]) / c.sum(axis=1)
                                      for c in _resampled_counts(w[mask], n_resamples, rng)])
            low, high, _, _ = _percentile_interval(samples, confidence, n_resamples)
        result.append(
            CalibrationBin(
                low=float(edges[b]),
                high=float(edges[b + 1]),
                n=int(round(weight)),
                mean_judge=float(w[mask] @ j[mask] / weight) if weight else None,
                mean_human=float(w[mask] @ h[mask] / weight) if weight else None,
                human_low=low,
                human_high=high,
            )
        )
    return result


def label_warnings(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    small_n: int = SMALL_N,
    one_sided_share: float = ONE_SIDED_SHARE,
) -> list[AgreementWarning]:
    """Warnings the dashboard shows next to the figures: too few items, or labels piled on one value."""
    return _label_warnings(_paired_cells(judge, human)[0], small_n=small_n, one_sided_share=one_sided_share)


def _label_warnings(cells: _Cells, *, small_n: int = SMALL_N, one_sided_share: float = ONE_SIDED_SHARE) -> list[AgreementWarning]:
    n = cells.n
    if n == 0:
        return [AgreementWarning("no_pairs", "No item has both a judge score and a human label yet.")]
    found = []
    if n < small_n:
        found.append(
            AgreementWarning("small_n", f"Only {n} labeled items (< {small_n}): the figures can move a lot.")
        )
    for code, who, values in (("one_sided_human", "human labels", cells.human), ("one_sided_judge", "judge scores", cells.judge)):
        _, inverse = np.unique(values, return_inverse=True)
        share = np.bincount(inverse.ravel(), weights=cells.counts).max() / n
        if share >= one_sided_share:
            found.append(
                AgreementWarning(
                    code,  # type: ignore[arg-type]
                    f"{share:.0%} of {who} have the same value: kappa and correlations say little; "
                    "label items from the other side (e.g. disagreement-first or stratified sampling).",
                )
            )
    return found


# --------------------------------------------------------------------------------------------------------------
# Krippendorff's alpha: any number of raters, missing values allowed


def _unit_patterns(
    data: np.ndarray, level: AlphaLevel, item_counts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values, distinct per-item summaries (pairable items only), and how many items share each.

    Alpha is a sum of per-item contributions, so identical items are stored once with a count. Nominal and ordinal
    summaries are value counts per item (items × distinct values); interval summaries are the moments
    (m, sum x, sum x²), which keeps continuous scores from building a value × value matrix.
    """
    finite = np.isfinite(data)
    values = np.unique(data[finite])
    m_u = finite.sum(axis=0)
    pairable = m_u >= 2  # an item with one rating has nothing to agree with
    if level == "interval":
        x = np.where(finite, data, 0.0)
        rows = np.column_stack([m_u, x.sum(axis=0), (x * x).sum(axis=0)])[pairable]
    else:
        per_unit = np.zeros((data.shape[1], values.size))
        raters, items = np.nonzero(finite)
        np.add.at(per_unit, (items, np.searchsorted(values, data[raters, items])), 1)
        rows = per_unit[pairable]
    weights = np.ones(rows.shape[0]) if item_counts is None else item_counts[pairable]
    if rows.shape[0] == 0:
        return values, rows, np.array([], dtype=float)
    patterns, inverse = np.unique(rows, axis=0, return_inverse=True)
    return values, patterns, np.bincount(inverse.ravel(), weights=weights, minlength=patterns.shape[0]).astype(float)


def _alpha_from_weights(
    weights: np.ndarray, values: np.ndarray, patterns: np.ndarray, level: AlphaLevel
) -> np.ndarray:
    """Alpha per row of item-pattern weights (resamples × patterns)."""
    if level == "interval":
        # Squared differences within an item and across all values reduce to moments.
        m_u, s1, s2 = patterns[:, 0], patterns[:, 1], patterns[:, 2]
        observed_u = 2.0 * (m_u * s2 - s1**2) / (m_u - 1.0)
        n = weights @ m_u
        observed = weights @ observed_u
        total_s1 = weights @ s1
        expected = 2.0 * (n * (weights @ s2) - total_s1**2)
    else:
        v = values.size
        m_u = patterns.sum(axis=1)
        # Each item adds (n_u n_uᵀ − diag n_u) / (m_u − 1) to the coincidence matrix.
        contrib = (patterns[:, :, None] * patterns[:, None, :]) - np.einsum("pi,ij->pij", patterns, np.eye(v))
        contrib = (contrib / (m_u - 1.0)[:, None, None]).reshape(len(patterns), v * v)
        o = (weights @ contrib).reshape(-1, v, v)
        n_c = o.sum(axis=2)
        n = n_c.sum(axis=1)
        if level == "nominal":
            delta = np.broadcast_to(1.0 - np.eye(v), o.shape)
        else:
            # Ordinal metric: (sum of n_g for g from c to k − (n_c + n_k)/2)², from the resample's own marginals.
            cum = np.cumsum(n_c, axis=1)
            between = cum[:, None, :] - cum[:, :, None] + n_c[:, :, None] / 2.0 - n_c[:, None, :] / 2.0
            delta = between**2
        observed = (o * delta).sum(axis=(1, 2))
        expected = (n_c[:, :, None] * n_c[:, None, :] * delta).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        defined = expected > 1e-12 * np.maximum(1.0, np.abs(observed))
        return np.where(defined, 1.0 - (n - 1.0) * observed / expected, np.nan)


def krippendorff_alpha(
    reliability_data: Sequence[Sequence[float | int | None]] | np.ndarray,
    *,
    level: AlphaLevel = "ordinal",
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    item_counts: Sequence[float] | np.ndarray | None = None,
) -> Stat:
    """Krippendorff's alpha for a raters × items table (None/NaN = not rated). n = number of pairable values.

    ``item_counts``: how many items each column stands for, when identical items were aggregated beforehand.

    Used for judge vs humans (the judge is one more rater) and for the human–human ceiling. With ``n_resamples``
    > 0 the interval comes from resampling items.
    """
    data = np.array(
        reliability_data
        if isinstance(reliability_data, np.ndarray)
        else [[np.nan if v is None else float(v) for v in row] for row in reliability_data],
        dtype=float,
    )
    if data.ndim != 2:
        raise ValueError("reliability_data must be a table: one row per rater, one column per item.")
    if level != "interval" and np.unique(data[np.isfinite(data)]).size > MAX_CATEGORIES:
        return Stat(
            None,
            int(np.isfinite(data).sum()),
            f"{level} alpha needs discrete values (at most {MAX_CATEGORIES} distinct); use level='interval' "
            "for continuous scores",
        )
    weights = None if item_counts is None else _as_float(item_counts)
    if weights is not None and weights.size != data.shape[1]:
        raise ValueError(f"item_counts must have one entry per item (column); got {weights.size} for {data.shape[1]}.")
    values, patterns, counts = _unit_patterns(data, level, weights)
    # n counts items (rated by two or more), like every other figure; the ratings behind them are kept apart.
    ratings = int(round((patterns[:, 0] if level == "interval" else patterns.sum(axis=1)) @ counts)) if counts.size else 0
    n = int(round(counts.sum())) if counts.size else 0
    if n == 0:
        return Stat(None, 0, "no item was rated by at least two raters", ratings=0)
    if n < MIN_CHANCE_CORRECTED_ITEMS:
        return Stat(None, n, f"alpha needs at least {MIN_CHANCE_CORRECTED_ITEMS} items rated twice, has {n}",
                    ratings=ratings)
    if values.size < 2:
        return Stat(
            None,
            n,
            "alpha is undefined: every rating has the same value, so there is no variation to agree on",
            ratings=ratings,
        )
    value = _alpha_from_weights(counts[None, :], values, patterns, level)[0]
    if not np.isfinite(value):
        return Stat(None, n, "alpha is undefined: the pairable ratings have no variation", ratings=ratings)
    stat = Stat(float(value), n, ratings=ratings)
    if n_resamples <= 0:
        return stat
    if counts.sum() < 2:
        return Stat(stat.value, n, None, None, None, "needs at least 2 pairable items for an interval",
                    ratings=ratings)
    rng = np.random.default_rng(seed)
    width = 0 if level == "interval" else 4 * values.size**2
    samples = np.concatenate(
        [
            _alpha_from_weights(w, values, patterns, level)
            for w in _resampled_counts(counts, n_resamples, rng, width=width)
        ]
    )
    return _with_interval(stat, _percentile_interval(samples, confidence, n_resamples))


# --------------------------------------------------------------------------------------------------------------
# Everything at once, for the dashboard


def agreement_report(
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray,
    *,
    kind: Kind = "ordinal",
    labels: Sequence[float] | None = None,
    tolerance: float = 0.0,
    calibration: int | Sequence[float] = 5,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    counts: Sequence[float] | np.ndarray | None = None,
) -> AgreementReport:
    """All figures for one judge × criterion against one human value per item (e.g. the majority or mean label).

    ``counts``: how many items each (judge, human) pair stands for, when the caller aggregated them already
    (the dashboard's SQL does): the cost then depends on the number of distinct pairs, not on the items.

    ``kind``: "ordinal" (choice indices; quadratic-weighted kappa, ordinal alpha), "nominal" (unordered choices;
    plain kappa, nominal alpha) or "score" (a continuous scale; no kappa, interval alpha, calibration bins).
    AC1 and PABAK are computed over ``labels`` (every choice of the criterion) for choices.
    """
    cells, n_missing = _paired_cells(judge, human, counts)
    n = cells.n
    label_array = _labels(cells.judge, cells.human, labels) if n else np.array([])

    weighted = "weighted_kappa_quadratic"
    continuous = "kappa, AC1 and PABAK need choices; a continuous scale is compared with alpha and correlations"
    if kind == "score":
        ac1 = pabak_stat = Stat(None, n, continuous)
    else:
        ac1, pabak_stat = _ac1_pabak(cells, label_array if n else None)
    stats = {
        "percent_agreement": _percent_agreement(cells, tolerance),
        "cohen_kappa": (
            Stat(None, n, continuous) if kind == "score" else _cohen_kappa(cells, None, label_array if n else None)
        ),
        weighted: (
            Stat(None, n, "weighted kappa needs ordered values; this criterion is nominal")
            if kind == "nominal"
            else Stat(None, n, continuous)
            if kind == "score"
            else _cohen_kappa(cells, "quadratic", label_array if n else None)
        ),
        "gwet_ac1": ac1,
        "pabak": pabak_stat,
        "spearman": _correlation(cells, "spearman"),
        "pearson": _correlation(cells, "pearson"),
        "mae": _mean_absolute_error(cells),
        "bias": _bias(cells),
    }
    if n_resamples > 0:
        defined = [name for name, stat in stats.items() if stat.value is not None]
        intervals = _bootstrap_paired(
            cells,
            defined,
            labels=label_array if n else None,
            tolerance=tolerance,
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )
        stats = {
            name: _with_interval(stat, intervals[name]) if name in intervals else stat
            for name, stat in stats.items()
        }
    alpha_level: AlphaLevel = {"nominal": "nominal", "ordinal": "ordinal", "score": "interval"}[kind]  # type: ignore[assignment]
    return AgreementReport(
        kind=kind,
        n=n,
        n_missing=n_missing,
        percent_agreement=stats["percent_agreement"],
        cohen_kappa=stats["cohen_kappa"],
        weighted_kappa=stats[weighted],
        krippendorff_alpha=krippendorff_alpha(
            np.vstack([cells.judge, cells.human]), level=alpha_level, n_resamples=n_resamples,
            confidence=confidence, seed=seed, item_counts=cells.counts,
        ),
        gwet_ac1=stats["gwet_ac1"],
        pabak=stats["pabak"],
        spearman=stats["spearman"],
        pearson=stats["pearson"],
        mae=stats["mae"],
        bias=stats["bias"],
        confusion=(
            _confusion_matrix(cells, label_array)
            if kind != "score" and label_array.size <= MAX_CATEGORIES
            else None
        ),
        calibration=_calibration_bins(cells, calibration) if kind == "score" else [],
        warnings=_label_warnings(cells),
        per_class=(
            per_class_recall(cells, labels=label_array)
            if kind != "score" and n and label_array.size <= MAX_CATEGORIES
            else []
        ),
    )


# --------------------------------------------------------------------------------------------------------------
# Judge-bias diagnostics


def length_score_correlation(
    lengths: Sequence[float | int | None] | np.ndarray,
    judge: Sequence[float | int | None] | np.ndarray,
    human: Sequence[float | int | None] | np.ndarray | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> LengthBias:
    """Spearman correlation of completion length (tokens or characters) with judge and with human scores.

    The difference judge ρ − human ρ is computed on the items that have all three values, with a bootstrap interval
    over those items."""
    judge_stat = spearman(lengths, judge)
    human_stat = spearman(lengths, human) if human is not None else None
    if human is None or judge_stat.value is None or human_stat is None or human_stat.value is None:
        return LengthBias(judge_stat, human_stat, None)
    x, j, h = _as_float(lengths), _as_float(judge), _as_float(human)
    keep = ~(np.isnan(x) | np.isnan(j) | np.isnan(h))
    x, j, h = x[keep], j[keep], h[keep]
    triples, counts = np.unique(np.column_stack([x, j, h]), axis=0, return_counts=True)
    w = counts.astype(float)[None, :]

    def difference(weights: np.ndarray) -> np.ndarray:
        rank_x = _midranks(triples[:, 0], weights)
        return (_weighted_pearson(rank_x, _midranks(triples[:, 1], weights), weights)
                - _weighted_pearson(rank_x, _midranks(triples[:, 2], weights), weights))

    value = float(difference(w)[0])
    if not np.isfinite(value) or n_resamples <= 0:
        return LengthBias(judge_stat, human_stat, value if np.isfinite(value) else None)
    if x.size < 2:
        return LengthBias(judge_stat, human_stat, value, None, None, "needs at least 2 items for an interval")
    rng = np.random.default_rng(seed)
    samples = np.concatenate([difference(c) for c in _resampled_counts(counts.astype(float), n_resamples, rng,
                                                                      width=4 * triples.shape[0])])
    low, high, reason, _ = _percentile_interval(samples, confidence, n_resamples)
    return LengthBias(judge_stat, human_stat, value, low, high, reason)


def _ratio_stat(numerator: np.ndarray, denominator: np.ndarray, *, n: int, empty: str, n_resamples: int,
                confidence: float, seed: int) -> Stat:
    """Σ numerator / Σ denominator over units (pairs), with a percentile bootstrap over the units."""
    total = float(denominator.sum())
    if total == 0:
        return Stat(None, 0, empty)
    stat = Stat(float(numerator.sum()) / total, n)
    if n_resamples <= 0:
        return stat
    if numerator.size < 2:
        return Stat(stat.value, n, None, None, None, "needs at least 2 pairs for an interval")
    patterns, counts = np.unique(np.column_stack([numerator, denominator]), axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        samples = np.concatenate([
            np.where(w @ patterns[:, 1] > 0, (w @ patterns[:, 0]) / (w @ patterns[:, 1]), np.nan)
            for w in _resampled_counts(counts.astype(float), n_resamples, rng)
        ])
    return _with_interval(stat, _percentile_interval(samples, confidence, n_resamples))


_SWAP = {"A": "B", "B": "A", "tie": "tie"}


def position_swap_consistency(
    first: Sequence[PairwiseVerdict | None], swapped: Sequence[PairwiseVerdict | None], *,
    n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
) -> PositionSwapReport:
    """Compare verdicts on (x, y) shown as A=x, B=y (``first``) and again as A=y, B=x (``swapped``).

    Verdicts name the position the judge preferred ("A" = shown first). A consistent judge names the same rollout
    both times, i.e. ``swapped`` is ``first`` with A and B exchanged.
    """
    if len(first) != len(swapped):
        raise ValueError(
            f"first and swapped must have one verdict per pair; got {len(first)} and {len(swapped)}."
        )
    pairs = [(a, b) for a, b in zip(first, swapped, strict=True) if a is not None and b is not None]
    for a, b in pairs:
        if a not in _SWAP or b not in _SWAP:
            raise ValueError(f"verdicts must be 'A', 'B' or 'tie'; got {a!r} and {b!r}.")
    n = len(pairs)
    if n == 0:
        empty = "no pair was judged in both orders"
        return PositionSwapReport(0, Stat(None, 0, empty), Stat(None, 0, empty), Stat(None, 0, empty))
    # Units are pairs: the two verdicts on one pair are not independent, so the bootstrap resamples pairs.
    consistent = np.array([1.0 if _SWAP[a] == b else 0.0 for a, b in pairs])
    first_picks = np.array([float((a == "A") + (b == "A")) for a, b in pairs])
    decided = np.array([float((a != "tie") + (b != "tie")) for a, b in pairs])
    ties = 2.0 - decided
    options = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    return PositionSwapReport(
        n=n,
        consistency=_ratio_stat(consistent, np.ones(n), n=n, empty="", **options),
        first_position_rate=_ratio_stat(first_picks, decided, n=int(decided.sum()), empty="every verdict was a tie",
                                        **options),
        tie_rate=_ratio_stat(ties, np.full(n, 2.0), n=2 * n, empty="", **options),
    )
