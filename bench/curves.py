"""Curves, not points (issue 20, item 5): rollout browser p95, dashboard recompute, ingest and export at growing
row counts, drawn as one figure so the growth is visible (pages should stay flat, bulk work grow linearly).

    .venv/bin/python bench/curves.py                       # 10k, 100k, 300k rows (about 20 minutes on 2 cores)
    .venv/bin/python bench/curves.py --full                # 100k, 1M, 3M rows (~65 min on 2 shared cores)
    .venv/bin/python bench/curves.py --sizes 3000000 --only browser export   # some panels, in this order
    .venv/bin/python bench/curves.py --sizes 10000 30000   # any sizes
    .venv/bin/python bench/curves.py --plot-only           # redraw from docs/img/bench-curves.json

Each point is the benchmark script of that figure, run at that size as its own process (bench/rollout_browser.py,
review_dashboard.py, ingest_throughput.py, export_throughput.py), reporting through bench/_results.py. Every size has
its own databases (`rubricon_bench_curves_<what>_<rows>`), so seeded rows are reused by the next run at that size.
The figures go to docs/img/bench-curves.json (after each benchmark, so a stopped run keeps what it measured)
and the plot to docs/img/bench-curves.svg and .png.
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


BENCHES = ("browser", "dashboard", "ingest", "export")


def commands(rows: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The benchmark of each panel at one size: its script, arguments and environment."""
    return {
        "browser": (["rollout_browser.py", "--rollouts", str(rows), "--repeat", "20", "--no-search"],
                    {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/rubricon_bench_curves_browser_{rows}"}),
        "dashboard": (["review_dashboard.py", "--rollouts", str(rows), "--repeat", "3", "--no-bias", "--no-writes",
                       "--database", f"rubricon_bench_curves_reviews_{rows}"], {}),
        # The import that names its ImportRecord is a figure of its own (docs/benchmarks.md), not plotted here.
        "ingest": (["ingest_throughput.py", "--rows", str(rows), "--no-named", "--database",
                    f"rubricon_bench_curves_ingest_{rows}"], {}),
        "export": (["export_throughput.py", "--rows", str(rows), "--repeat", "1", "--database",
                    f"rubricon_bench_curves_export_{rows}"], {}),
    }


def measure(rows: int, what: str, log_dir: Path) -> dict[str, float]:
    """One benchmark at one size: its figures by name, plus the 1-minute load average when it ended (`load <what>`)
    and its wall time with seeding (`wall <what>`). Its output goes to log_dir/curves-<what>-<rows>.log as it runs."""
    command, env = commands(rows)[what]
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as handle:
        results = Path(handle.name)
    log = log_dir / f"curves-{what}-{rows}.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, str(ROOT / "bench" / command[0]), *command[1:]], cwd=ROOT,
                              env={**os.environ, **env, "RUBRICON_BENCH_RESULTS": str(results)},
                              stdout=out, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        print(log.read_text()[-3000:])
        raise SystemExit(f"{command[0]} failed at {rows:,} rows (log: {log})")
    figures: dict[str, float] = {}
    for line in results.read_text().splitlines():
        fig = json.loads(line)
        # "first page: p95" at 10,000 -> "browser first page: p95"; the size is the x axis.
        name = re.sub(r" (at|of) [0-9,]+\b|\s*\([0-9,]+( rollouts)?\)", "", f"{what} {fig['figure']}")
        figures[name] = fig["value"]
    results.unlink()
    figures[f"load {what}"] = os.getloadavg()[0]
    figures[f"wall {what}"] = wall
    print(f"  {rows:>9,} rows  {what:9} {wall:6.0f} s  load {figures[f'load {what}']:.1f}", flush=True)
    return figures


# title, figure names (prefix, suffix), what the shape should be, the curve a slope-1 line starts from (log–log).
PANELS = [
    ("Rollout browser, page p95 (ms)", "browser ", ": p95", "flat", None),
    ("Agreement dashboard, max of 3 (s)", "dashboard ", ", max", "flat cached, linear recomputed",
     "dashboard recomputed, max"),
    ("Ingest from JSONL (s)", "ingest ", " seconds", "linear", "ingest import seconds"),
    ("Export of rollouts with scores (s)", "export ", " seconds", "linear", "export jsonl seconds"),
]
# The baselines' seconds, from the figures each benchmark reports: the ratio is baseline rows/s over ours (ingest)
# or our seconds over the baseline's (export), measured in the same run.
BASELINES = {
    "ingest COPY FROM seconds": ("ingest import seconds", "ingest import / COPY FROM rows/s"),
    "export COPY TO seconds": ("export jsonl seconds", "export jsonl / COPY rows/s"),
}


def load(figures: dict[str, float]) -> float:
    """A size's load average: the mean of those its benchmarks ended at (older files kept one, `load`)."""
    loads = [v for k, v in figures.items() if k.startswith("load ")]
    return sum(loads) / len(loads) if loads else figures.get("load", 0.0)


def rows_label(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def plot(data: dict[str, dict[str, float]], paths: list[Path]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt.rcParams["svg.hashsalt"] = "rubricon"  # the same data draws the same file
    data = {size: {**figures, **{name: figures[ours] * figures[ratio] for name, (ours, ratio) in BASELINES.items()
                                 if ours in figures and ratio in figures}}
            for size, figures in data.items()}
    sizes = sorted(int(s) for s in data)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for ax, (title, prefix, suffix, shape, guide) in zip(axes.flat, PANELS, strict=True):
        names = sorted({k for s in data.values() for k in s if k.startswith(prefix) and k.endswith(suffix)})
        for name in names:
            xs = [n for n in sizes if name in data[str(n)]]
            label = name.removeprefix(prefix).removesuffix(suffix).strip() or name
            baseline = name in BASELINES
            ax.plot(xs, [data[str(n)][name] for n in xs], marker="s" if baseline else "o",
                    linestyle="--" if baseline else "-", label=label)
        ax.set_xscale("log")
        if guide is None:  # a flat curve reads best against zero
            ax.set_ylim(bottom=0)
        else:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            xs = [n for n in sizes if guide in data[str(n)]]
            if len(xs) > 1:  # slope 1 through the guide curve's first point: what linear looks like
                y0 = data[str(xs[0])][guide]
                ax.plot(xs, [y0 * n / xs[0] for n in xs], linestyle=":", color="grey", label="linear")
        ax.set_xticks(sizes, [rows_label(n) for n in sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{title}: should be {shape}", fontsize=9)
        ax.set_xlabel("rows (log)")
        ax.grid(True, which="both", alpha=0.3)
        if names:
            ax.legend(fontsize=7)
    loads = ", ".join(f"{load(data[str(n)]):.1f}" for n in sizes)
    fig.suptitle(f"Rubricon at {', '.join(rows_label(n) for n in sizes)} rows (2 shared cores; load {loads})",
                 fontsize=11)
    fig.tight_layout()
    for path in paths:
        fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else {"Software": None}, dpi=100)
        print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+")
    parser.add_argument("--full", action="store_true", help=f"sizes {FULL}")
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES),
                        help="these panels' benchmarks only, in this order (the others' figures at that size are kept)")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--log-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where each benchmark's output goes as it runs (curves-<what>-<rows>.log)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_path = args.out / "bench-curves.json"
    data: dict[str, dict[str, float]] = json.loads(data_path.read_text()) if data_path.exists() else {}
    if not args.plot_only:
        for rows in args.sizes or (FULL if args.full else SMALL):
            for what in dict.fromkeys(args.only):  # in the order given: the cheaper first when time is short
                figures = measure(rows, what, args.log_dir)
                kept = {k: v for k, v in data.get(str(rows), {}).items()
                        if k != "load" and not (k.startswith(f"{what} ") or k.endswith(f" {what}"))}
                data[str(rows)] = {**kept, **figures}
                # Written after every benchmark: a run stopped part-way keeps what it measured.
                data_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    plot(data, [args.out / "bench-curves.svg", args.out / "bench-curves.png"])


if __name__ == "__main__":
    main()
