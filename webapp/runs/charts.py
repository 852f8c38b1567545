"""Line charts as inline SVG, computed on the server: no chart library, no CDN, no JavaScript.

A chart is a dataclass of ready-to-draw coordinates; `templates/runs/_chart.html` turns it into SVG (autoescaped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from webapp.runs.models import TrainingMetric

WIDTH, HEIGHT = 320, 160
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 8, 22
PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"]

# What the run page draws: title and the metric keys (a key ending in "*" takes every per-criterion reward).
CHARTS: list[tuple[str, list[str]]] = [
    ("Reward", ["reward"]),
    ("Reward per criterion", ["rewards/*/mean"]),
    ("KL", ["kl"]),
    ("Loss", ["loss"]),
    ("Completion length", ["completions/mean_length"]),
    ("Zero-std share", ["frac_reward_zero_std"]),
    ("Step time (s)", ["timing/generation_s", "timing/reward_s", "timing/update_s"]),
]


@dataclass
class Series:
    label: str
    points: list[tuple[int, float]]
    color: str = ""
    svg_points: str = ""


@dataclass
class Chart:
    title: str
    series: list[Series]
    width: int = WIDTH
    height: int = HEIGHT
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y pixel, label)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    empty: bool = True
    empty_reason: str = "No data yet."
    left: int = LEFT  # room for the longest y-axis label


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def line_chart(title: str, series: Sequence[Series]) -> Chart:
    drawn = [s for s in series if s.points]
    chart = Chart(title=title, series=list(series))
    if not drawn:
        return chart
    xs = [x for s in drawn for x, _ in s.points]
    ys = [y for s in drawn for _, y in s.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y0 == y1:  # a flat line sits in the middle, not on the frame
        y0, y1 = y0 - (abs(y0) or 1) * 0.5, y1 + (abs(y1) or 1) * 0.5
    x1 = x1 if x1 > x0 else x0 + 1
    labels = [_fmt(v) for v in (y0, (y0 + y1) / 2, y1)]
    # ~6.5 px a character at the tick font size: the longest label ("-1.23e-05") must fit left of the axis.
    chart.left = left = max(LEFT, math.ceil(6.5 * max(len(label) for label in labels)) + 8)
    plot_w, plot_h = WIDTH - left - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return round(left + (x - x0) / (x1 - x0) * plot_w, 1)

    def py(y: float) -> float:
        return round(TOP + (1 - (y - y0) / (y1 - y0)) * plot_h, 1)

    for index, s in enumerate(chart.series):
        s.color = s.color or PALETTE[index % len(PALETTE)]
        s.svg_points = " ".join(f"{px(x)},{py(y)}" for x, y in s.points)
    chart.y_ticks = [(py(v), label) for v, label in zip((y0, (y0 + y1) / 2, y1), labels, strict=True)]
    chart.x_ticks = [(px(v), str(round(v))) for v in sorted({x0, x1})]
    chart.empty = False
    return chart


def metric_series(metrics: Sequence[TrainingMetric], key: str, label: str | None = None) -> list[Series]:
    """One series per metric key; a key with "*" expands to every matching key present (per-criterion rewards)."""
    if "*" in key:
        prefix, suffix = key.split("*", 1)
        keys = sorted({k for m in metrics for k in m.metrics if k.startswith(prefix) and k.endswith(suffix)})
        return [s for k in keys for s in metric_series(metrics, k, k[len(prefix):len(k) - len(suffix)])]
    points = [
        (m.step, float(m.metrics[key])) for m in metrics
        if isinstance(m.metrics.get(key), int | float) and math.isfinite(m.metrics[key])
    ]
    return [Series(label=label or key, points=points)]


# Charts a run's configuration can leave empty for good, with the reason shown instead of "No data yet".
NEVER_DRAWN = {"KL": (lambda config: float(config.get("beta", 0.0) or 0.0) == 0.0,
                      "β = 0: no reference model, so TRL computes no KL. Set β > 0 to watch drift from the base model.")}


def run_charts(metrics: Sequence[TrainingMetric], *, config: dict | None = None) -> list[Chart]:
    charts = [line_chart(title, [s for key in keys for s in metric_series(metrics, key)]) for title, keys in CHARTS]
    for chart in charts:
        never = NEVER_DRAWN.get(chart.title)
        if chart.empty and config is not None and never and never[0](config):
            chart.empty_reason = never[1]
    return charts


def compare_charts(runs_metrics: Sequence[tuple[str, Sequence[TrainingMetric]]]) -> list[Chart]:
    """The same charts with one line per run (per-criterion rewards: one line per run and criterion)."""
    charts = []
    for title, keys in CHARTS:
        series = [
            Series(label=f"{name} · {s.label}" if len(keys) > 1 or "*" in keys[0] else name, points=s.points)
            for name, metrics in runs_metrics for key in keys for s in metric_series(metrics, key)
        ]
        charts.append(line_chart(title, series))
    return charts


def watch_chart(steps: Sequence[Any]) -> Chart:
    """Reward-hacking watch: mean reward per step against the human-judged quality of the step's labelled rollouts
    (points of webapp.reviews.watch.StepPoint)."""
    chart = line_chart("Reward vs human-judged quality", [
        Series(label="reward (all rollouts)", points=[(p.step, p.reward) for p in steps if p.reward is not None]),
        Series(label="reward (labelled rollouts)",
               points=[(p.step, p.reward_labelled) for p in steps if p.reward_labelled is not None]),
        Series(label="human-judged quality", points=[(p.step, p.quality) for p in steps if p.quality is not None]),
    ])
    if chart.empty:
        chart.empty_reason = "No rewards or labels yet."
    return chart
