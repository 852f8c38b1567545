"""Every benchmark in one command, with one table of figures against their targets.

    make bench                                  # = .venv/bin/python -m bench: every benchmark, small sizes
    .venv/bin/python -m bench --full            # the sizes docs/benchmarks.md records (long: seeding 1M rows)
    .venv/bin/python -m bench --only export ingest --skip-slow
    .venv/bin/python -m bench --list

Each benchmark runs as its own process (its own database, `rubricon_bench_*`, never the test database) and reports
its figures through `bench/_results.py`. Seeded rows stay in those databases: a second run reuses them (the export
and browser benchmarks look for rows of the size asked before seeding; the dashboard and annotator benchmarks
reseed by INSERT … SELECT / bulk insert in seconds; ingest writes its input file anew). Figures are only comparable
within one run on one machine; on a shared machine read the ratios (each measured against its baseline in the
same run), not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    small: list[str]
    full: list[str]
    # Slow even at the small size (a vLLM engine start, a model): left out by --skip-slow.
    slow: bool = False
    # A benchmark that may not exist in this checkout (another branch adds it): skipped, not failed, when missing.
    optional: bool = False
    env: dict[str, str] = field(default_factory=dict)


# The registry. A new benchmark: a script in bench/ that calls bench._results.emit(...) for each figure, and a line
# here with its small (default) and full arguments.
REGISTRY: list[Benchmark] = [
    Benchmark("judge client", "judge_throughput.py", ["--items", "1000", "--sequential-items", "20"],
              ["--items", "8000"]),
    # Issue 20 item 1: judge jobs end to end (enqueue → real Celery workers → scores in Postgres), 1 and 2 workers.
    Benchmark("judge jobs", "judge_job_throughput.py", ["--rollouts", "2000"], ["--rollouts", "20000"], slow=True),
    Benchmark("export", "export_throughput.py", ["--rows", "10000"], ["--rows", "100000", "1000000"]),
    Benchmark("ingest", "ingest_throughput.py", ["--rows", "10000"], ["--rows", "100000", "1000000"]),
    Benchmark("rollout browser", "rollout_browser.py", ["--rollouts", "10000", "--repeat", "10"],
              ["--rollouts", "1000000", "--repeat", "30"]),
    Benchmark("review dashboard", "review_dashboard.py", ["--rollouts", "10000", "--repeat", "3"],
              ["--rollouts", "125000", "--repeat", "7"]),
    Benchmark("annotators", "annotator_load.py",
              ["--annotators", "20", "--seconds", "15", "--warmup", "5", "--items", "600"],
              ["--annotators", "100", "--seconds", "60", "--warmup", "10"]),
    Benchmark("GRPO step", "grpo_step_time.py", ["--model", "tiny", "--steps", "3", "--rounds", "1"],
              ["--model", "bundled", "--steps", "4", "--rounds", "2", "--generations", "4",
               "--completion-tokens", "16"], slow=True),
    Benchmark("local judge", "local_judge.py", ["--rollouts", "4"], ["--rollouts", "16", "--repeats", "2"], slow=True),
    Benchmark("generation (backend)", "generation_throughput.py",
              ["--prompts", "4", "--n", "2", "--max-tokens", "16", "--repeats", "1"], ["--repeats", "3"], slow=True),
    Benchmark("generation (job)", "generation_job_throughput.py", ["--prompts", "8", "--repeats", "1"],
              ["--prompts", "128", "--repeats", "3"], slow=True),
]


def run(bench: Benchmark, *, full: bool, timeout: float, verbose: bool) -> tuple[list[dict], str]:
    """(figures, status) of one benchmark run in its own process."""
    script = BENCH / bench.script
    if not script.exists():
        return [], "not present" if bench.optional else "script missing"
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
        results = Path(handle.name)
    env = {**os.environ, **bench.env, "RUBRICON_BENCH_RESULTS": str(results)}
    command = [sys.executable, str(script), *(bench.full if full else bench.small)]
    print(f"\n### {bench.name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, timeout=timeout, text=True,
                              stdout=None if verbose else subprocess.PIPE, stderr=subprocess.STDOUT)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        if done.returncode and not verbose:
            print(done.stdout[-4000:])
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout:.0f} s"
    figures = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    results.unlink(missing_ok=True)
    print(f"    {status}, {len(figures)} figures, {time.perf_counter() - started:.0f} s", flush=True)
    if status == "ok" and not figures:
        status = "no figures"
    return figures, status


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "none"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip() if unit != "×" else f"{text}×"


def table(rows: list[tuple[str, dict | None, str]]) -> str:
    """One line per figure: benchmark, figure, measured, target, ratio to the target (> 1 beats it), pass/fail."""
    header = ("benchmark", "figure", "measured", "target", "vs target", "result")
    lines = []
    for name, fig, status in rows:
        if fig is None:
            lines.append((name, "—", "—", "—", "—", status.upper() if status != "not present" else "skipped"))
            continue
        value, target, higher = fig["value"], fig["target"], fig["higher_is_better"]
        if math.isinf(target):  # an informational figure
            lines.append((name, fig["figure"], fmt(value, fig["unit"]), "—", "—", "info"))
            continue
        if value is None:
            score = "—"
        elif higher:
            score = f"{value / target:.2f}" if target else "—"
        else:
            score = f"{target / value:.2f}" if value else ("ok" if target == 0 else "∞")
        lines.append((name, fig["figure"], fmt(value, fig["unit"]), ("≥ " if higher else "≤ ") + fmt(target, fig["unit"]),
                      score, "pass" if fig["pass"] else "FAIL"))
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the full sizes (hours on a 2-core machine)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these benchmarks (names as --list shows)")
    parser.add_argument("--skip-slow", action="store_true", help="leave out the model/vLLM benchmarks")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default 900, full 14400)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show each benchmark's own output")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for b in REGISTRY:
            present = "" if (BENCH / b.script).exists() else "  (not in this checkout)"
            print(f"{b.name:22} bench/{b.script:30} small: {' '.join(b.small) or '-'}{present}")
        return 0
    chosen = [b for b in REGISTRY if (not args.only or b.name in args.only or b.script.removesuffix(".py") in
                                      args.only) and not (args.skip_slow and b.slow)]
    if args.only and not chosen:
        parser.error(f"no benchmark named {', '.join(args.only)}; see --list")
    timeout = args.timeout or (14400 if args.full else 900)
    rows: list[tuple[str, dict | None, str]] = []
    load = os.getloadavg()[0]
    for bench in chosen:
        figures, status = run(bench, full=args.full, timeout=timeout, verbose=args.verbose)
        if status not in ("ok",):
            rows.append((bench.name, None, status))
        rows += [(bench.name, fig, status) for fig in figures]
    print(f"\n{'full' if args.full else 'small'} sizes; 1-minute load average {load:.1f} → {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs (figures move with load on a shared machine; ratios less so)\n")
    print(table(rows))
    failed = [r for r in rows if (r[1] is None and r[2] != "not present") or (r[1] is not None and not r[1]["pass"]
                                                                                and not math.isinf(r[1]["target"]))]
    skipped = sum(1 for r in rows if r[1] is None and r[2] == "not present")
    print(f"\n{len(rows) - len(failed) - skipped} of {len(rows) - skipped} pass"
          + (f" ({skipped} not in this checkout)" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
