"""Curves, not points (issue 20, item 5): rollout browser p95, dashboard recompute, ingest and export at growing
row counts, drawn as one figure so the growth is visible (pages should stay flat, bulk work grow linearly).

    .venv/bin/python bench/curves.py                       # 10k, 100k, 300k rows (about 20 minutes on 2 cores)
    .venv/bin/python bench/curves.py --full                # 100k, 1M, 3M rows (hours: seeding 3M rows)
    .venv/bin/python bench/curves.py --sizes 10000 30000   # any sizes
    .venv/bin/python bench/curves.py --plot-only           # redraw from docs/img/bench-curves.json

Each point is the benchmark script of that figure, run at that size as its own process (bench/rollout_browser.py,
review_dashboard.py, ingest_throughput.py, export_throughput.py), reporting through bench/_results.py. Every size has
its own databases (`rubricon_bench_curves_<what>_<rows>`), so seeded rows are reused by the next run at that size.
The figures go to docs/img/bench-curves.json and the plot to docs/img/bench-curves.svg.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
SMALL, FULL = [10_000, 100_000, 300_000], [100_000, 1_000_000, 3_000_000]


def measure(rows: int) -> dict[str, float]:
    """One size: the figures of the four benchmarks, by name."""
    runs = {
        "browser": (["rollout_browser.py", "--rollouts", str(rows), "--repeat", "20", "--no-search"],
                    {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/rubricon_bench_curves_browser_{rows}"}),
        "dashboard": (["review_dashboard.py", "--rollouts", str(rows), "--repeat", "3", "--database",
                       f"rubricon_bench_curves_reviews_{rows}"], {}),
        "ingest": (["ingest_throughput.py", "--rows", str(rows), "--database", f"rubricon_bench_curves_ingest_{rows}"],
                   {}),
        "export": (["export_throughput.py", "--rows", str(rows), "--repeat", "1", "--database",
                    f"rubricon_bench_curves_export_{rows}"],
                   {}),
    }
    figures: dict[str, float] = {}
    for what, (command, env) in runs.items():
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
            results = Path(handle.name)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(ROOT / "bench" / command[0]), *command[1:]], cwd=ROOT,
                              env={**os.environ, **env, "RUBRICON_BENCH_RESULTS": str(results)},
                              capture_output=True, text=True)
        if done.returncode:
            print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"{command[0]} failed at {rows:,} rows")
        for line in results.read_text().splitlines():
            fig = json.loads(line)
            # "first page: p95" at 10,000 -> "browser first page: p95"; the size is the x axis.
            name = re.sub(r" (at|of) [0-9,]+\b|\s*\([0-9,]+( rollouts)?\)", "", f"{what} {fig['figure']}")
            figures[name] = fig["value"]
        results.unlink()
        print(f"  {rows:>9,} rows  {what:9} {time.perf_counter() - started:6.0f} s", flush=True)
    figures["load"] = os.getloadavg()[0]
    return figures


PANELS = [
    ("Rollout browser page p95 (ms)", "browser ", ": p95", "flat"),
    ("Agreement dashboard, max of 3 (s)", "dashboard ", ", max", "flat cached, linear recomputed"),
    ("Ingest from JSONL (s)", "ingest import seconds", "", "linear"),
    ("Export of rollouts with scores (s)", "export ", " seconds", "linear"),
]


def plot(data: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "rubricon"  # the same data draws the same file
    sizes = sorted(int(s) for s in data)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (title, prefix, suffix, shape) in zip(axes.flat, PANELS, strict=True):
        names = sorted({k for s in data.values() for k in s if k.startswith(prefix) and k.endswith(suffix)})
        for name in names:
            xs = [n for n in sizes if name in data[str(n)]]
            label = name.removeprefix(prefix).removesuffix(suffix).strip() or name
            ax.plot(xs, [data[str(n)][name] for n in xs], marker="o", label=label)
        ax.set_xscale("log")
        if shape == "linear":
            ax.set_yscale("log")
            if names and len(sizes) > 1:  # slope 1 from the first point of the first curve: what linear looks like
                first = next(n for n in sizes if names[0] in data[str(n)])
                y0 = data[str(first)][names[0]]
                ax.plot(sizes, [y0 * n / first for n in sizes], linestyle=":", color="grey", label="linear")
        ax.set_title(f"{title} — should be {shape}", fontsize=9)
        ax.set_xlabel("rows (log)")
        ax.grid(True, which="both", alpha=0.3)
        if names:
            ax.legend(fontsize=7)
    loads = ", ".join(f"{data[str(n)].get('load', 0):.1f}" for n in sizes)
    fig.suptitle(f"Rubricon at {', '.join(f'{n:,}' for n in sizes)} rows (2 shared cores; load {loads})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None})
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--full", action="store_true", help=f"sizes {FULL}")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_path = args.out / "bench-curves.json"
    data: dict[str, dict[str, float]] = json.loads(data_path.read_text()) if data_path.exists() else {}
    if not args.plot_only:
        for rows in args.sizes or (FULL if args.full else SMALL):
            data[str(rows)] = measure(rows)
            data_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    plot(data, args.out / "bench-curves.svg")


if __name__ == "__main__":
    main()
