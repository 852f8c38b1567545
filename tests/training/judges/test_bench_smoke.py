"""The throughput benchmark runs end to end on a small job (figures are the benchmark's business, not the test's)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench" / "judge_throughput.py"


def test_benchmark_scenarios_score_every_item_and_rerun_from_cache() -> None:
    spec = importlib.util.spec_from_file_location("judge_throughput", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(latency=0.01, server_concurrency=8)
    rows = bench.scenario("concurrent", items=60, concurrency=8, fault_rate=0.0, args=args, rerun_cached=True)
    rows += bench.scenario("faults", items=60, concurrency=8, fault_rate=0.3, args=args)
    first, rerun, faults = rows
    assert first["http_requests"] == 60 and first["scored"] == 60
    assert rerun["http_requests"] == 0 and rerun["judge_calls"] == 0 and rerun["scored"] == 60
    assert faults["scored"] + faults["failed_with_reason"] == 60
    assert faults["http_requests"] > 60 and faults["retries"] > 0
    assert all(row["server_rejected_429"] == 0 for row in rows)  # the client never exceeds the server's cap
