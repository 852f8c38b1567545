"""Figures a benchmark reports to `python -m bench` (which sets RUBRICON_BENCH_RESULTS to a file it reads back).
Run on its own, a benchmark prints its figures as before and this writes nothing."""

from __future__ import annotations

import json
import os


def emit(benchmark: str, figure: str, value: float | None, target: float, *, higher_is_better: bool,
         unit: str = "") -> None:
    """One figure against its target: ≥ target when higher is better, ≤ target otherwise."""
    path = os.environ.get("RUBRICON_BENCH_RESULTS")
    if not path:
        return
    ok = value is not None and (value >= target if higher_is_better else value <= target)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"benchmark": benchmark, "figure": figure, "value": value, "target": target,
                              "higher_is_better": higher_is_better, "unit": unit, "pass": ok}) + "\n")
