"""Random judge/label data written to Postgres through the services, and the figures reference libraries give on it.

Shared by the statistics regression tests and the property-based suite. Nothing here calls the app's statistics:
the human value, the pairing and every figure are recomputed independently (fractions, scikit-learn, scipy,
krippendorff, irrCAC) from the values as they were written.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import krippendorff
import numpy as np
import pandas as pd
from irrCAC.raw import CAC
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import cohen_kappa_score

from webapp.judging.models import CriterionScore
from webapp.reviews.services import label_save

FAILED = "failed"  # the judge call failed: score stored empty
MISSING = "missing"  # no score row at all
NAN = "nan"
INF = "inf"


@dataclass
class Criterion:
    """One criterion of the generated rubric: `steps` > 0 is ordinal (k = steps + 1 categories)."""

    key: str
    kind: str  # "choices" | "int_scale" | "continuous"
    steps: int
    spec: dict

    def value01(self, raw: float) -> float:
        """A label/score as stored: 0..1."""
        return raw / self.steps if self.steps else raw


@dataclass
class Item:
    judge: float | str  # a step index (ordinal) or a 0..1 value (continuous), or FAILED / MISSING / NAN / INF
    labels: list[float]  # step indices (ordinal) or 0..1 values (continuous); [] = not labelled


@dataclass
class Dataset:
    criterion: Criterion
    items: list[Item] = field(default_factory=list)


def choices_criterion(key: str, k: int) -> Criterion:
    spec = {"key": key, "title": key, "kind": "judge", "weight": 1.0, "question": "Is {{ completion }} good?",
            "choices": [{"label": f"c{i}"} for i in range(k)]}
    return Criterion(key, "choices", k - 1, spec)


def int_scale_criterion(key: str, low: int = 0, high: int = 10) -> Criterion:
    spec = {"key": key, "title": key, "kind": "judge", "weight": 1.0, "question": "Rate {{ completion }}.",
            "scale": {"min": low, "max": high}}
    return Criterion(key, "int_scale", high - low, spec)


def continuous_criterion(key: str) -> Criterion:
    spec = {"key": key, "title": key, "kind": "judge", "weight": 1.0, "question": "Score {{ completion }}.",
            "scale": {"min": 0, "max": 1}}
    return Criterion(key, "continuous", 0, spec)


def write(version, rollouts, datasets: list[Dataset], annotators, *, fingerprint: str = "judge-x") -> None:
    """Labels through `label_save` (the labeling form's service), scores as the judge job stores them."""
    scores = []
    for data in datasets:
        c = data.criterion
        for rollout, item in zip(rollouts, data.items, strict=False):
            for annotator, raw in zip(annotators, item.labels, strict=False):
                label_save(annotator=annotator, rollout_id=rollout.pk, rubric_version=version, criterion_key=c.key,
                           row_version=0, choice="", value=c.value01(raw))
            if item.judge == MISSING:
                continue
            score = {FAILED: None, NAN: float("nan"), INF: float("inf")}.get(item.judge) if isinstance(
                item.judge, str) else c.value01(item.judge)
            scores.append(CriterionScore(rollout=rollout, rubric_version=version, criterion_key=c.key,
                                         judge_fingerprint=fingerprint, score=score,
                                         error="judge call failed" if item.judge == FAILED else ""))
    CriterionScore.objects.bulk_create(scores)


# ---- the independent computation ----------------------------------------------------------------------------------


def _exact(value: float) -> Fraction:
    # Postgres turns a float label into NUMERIC by its decimal text, so do the same.
    return Fraction(Decimal(repr(value)))


def human_value(c: Criterion, labels: list[float]) -> float | None:
    """Ordinal: the mean index as a fraction, nearest choice, None on an exact half. Continuous: the mean."""
    if c.steps:
        mean = Fraction(sum(int(round(v)) for v in labels), len(labels))
        low = math.floor(mean)
        if mean - low == Fraction(1, 2):
            return None
        return float(low + (1 if mean - low > Fraction(1, 2) else 0))
    if len(set(labels)) == 1:
        return labels[0]
    return float(sum(_exact(v) for v in labels) / len(labels))


@dataclass
class Expected:
    judge: np.ndarray
    human: np.ndarray
    labelled: int
    failed: int
    missing: int
    split: int
    excluded: int
    multi_labels: list[list[float]]


def expected_pairs(data: Dataset) -> Expected:
    c = data.criterion
    judge, human, multi = [], [], []
    labelled = failed = missing = split = excluded = 0
    for item in data.items:
        if not item.labels:
            continue
        labelled += 1
        if len(item.labels) >= 2:
            multi.append(item.labels)
        h = human_value(c, item.labels)
        split += h is None
        if item.judge == FAILED:
            failed += 1
        elif item.judge in (MISSING, NAN, INF):
            missing += 1
        elif h is None:
            excluded += 1
        else:
            judge.append(float(item.judge))
            human.append(h)
    return Expected(np.array(judge, dtype=float), np.array(human, dtype=float), labelled, failed, missing, split,
                    excluded, multi)


def _constant(x: np.ndarray) -> bool:
    return np.unique(x).size <= 1


def oracle(c: Criterion, e: Expected, *, low: float = 0.0, high: float = 1.0) -> dict[str, float | None]:
    """Every figure the page shows, from reference libraries; None where the app must show "—"."""
    j, h = e.judge, e.human
    n = j.size
    if not c.steps:  # continuous scale: values in points
        j, h = low + j * (high - low), low + h * (high - low)
    out: dict[str, float | None] = {
        "percent_agreement": float(np.mean(j == h)) if n else None,
        "mae": float(np.mean(np.abs(j - h))) if n else None,
        "bias": float(np.mean(j - h)) if n else None,
    }
    correlations_defined = n >= 3 and not _constant(j) and not _constant(h)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["pearson"] = float(pearsonr(j, h).statistic) if correlations_defined else None
        out["spearman"] = float(spearmanr(j, h).statistic) if correlations_defined else None
    level = "ordinal" if c.steps else "interval"
    both_values = np.unique(np.concatenate([j, h])).size >= 2 if n else False
    out["krippendorff_alpha"] = (
        float(krippendorff.alpha(reliability_data=np.vstack([j, h]), level_of_measurement=level))
        if n >= 3 and both_values else None
    )
    if c.steps:
        k = c.steps + 1
        labels = list(range(k))
        kappa_defined = n >= 3 and not _constant(j) and not _constant(h)
        out["weighted_kappa"] = (
            float(cohen_kappa_score(h.astype(int), j.astype(int), labels=labels, weights="quadratic"))
            if kappa_defined else None
        )
        if n >= 3:
            cac = CAC(pd.DataFrame({"judge": j.astype(int), "human": h.astype(int)}), categories=labels, digits=15)
            out["gwet_ac1"] = float(cac.gwet()["est"]["coefficient_value"])
            out["pabak"] = float(cac.bp()["est"]["coefficient_value"])
        else:
            out["gwet_ac1"] = out["pabak"] = None
    # Human–human ceiling: alpha among the annotators on items labelled twice or more, same level as above.
    if e.multi_labels:
        width = max(len(v) for v in e.multi_labels)
        table = np.full((width, len(e.multi_labels)), np.nan)
        for col, values in enumerate(e.multi_labels):
            table[: len(values), col] = values
        distinct = np.unique(table[np.isfinite(table)]).size
        out["human_alpha"] = (
            float(krippendorff.alpha(reliability_data=table, level_of_measurement=level))
            if len(e.multi_labels) >= 3 and distinct >= 2 else None
        )
    else:
        out["human_alpha"] = None
    return out


def calibration_oracle(c: Criterion, e: Expected, bins: int = 5) -> list[tuple[int, float | None, float | None]]:
    """(n, mean judge, mean human) per judge-score bin on 0..1, with exact edges b / bins."""
    result: list[list] = [[0, [], []] for _ in range(bins)]
    for j, h in zip(e.judge, e.human, strict=True):
        # A score is the number it prints as: 0.6 is 3/5 and opens the [0.6, 0.8) bin.
        j01 = Fraction(int(j), c.steps) if c.steps else _exact(float(j))
        h01 = h / c.steps if c.steps else h
        b = min(int(j01 * bins), bins - 1)
        result[b][0] += 1
        result[b][1].append(float(j01) if c.steps else j)
        result[b][2].append(h01)
    return [(n, float(np.mean(js)) if n else None, float(np.mean(hs)) if n else None) for n, js, hs in result]
