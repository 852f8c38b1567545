"""Run charts: a chart the run's configuration leaves empty for good says why; y labels fit left of the axis."""

from __future__ import annotations

from webapp.runs.charts import WIDTH, run_charts
from webapp.runs.models import TrainingMetric


def metrics(values: list[float], key: str = "reward") -> list[TrainingMetric]:
    return [TrainingMetric(step=i + 1, metrics={key: v}) for i, v in enumerate(values)]


def by_title(charts):
    return {chart.title: chart for chart in charts}


def test_kl_chart_says_why_it_stays_empty_when_beta_is_zero():
    kl = by_title(run_charts(metrics([0.1, 0.2]), config={"beta": 0.0}))["KL"]
    assert kl.empty and "β = 0" in kl.empty_reason
    waiting = by_title(run_charts([], config={"beta": 0.04}))["KL"]
    assert waiting.empty and waiting.empty_reason == "No data yet."


def test_y_labels_get_the_room_they_need():
    tiny = by_title(run_charts(metrics([-1.25e-5, 3.5e-5], key="kl"), config={"beta": 0.04}))["KL"]
    longest = max(len(label) for _, label in tiny.y_ticks)
    assert longest >= 8 and tiny.left >= 6.5 * longest + 8
    xs = [float(p.split(",")[0]) for p in tiny.series[0].svg_points.split()]
    assert min(xs) == tiny.left and max(xs) <= WIDTH
    short = by_title(run_charts(metrics([0.0, 1.0])))["Reward"]
    assert short.left == 44
