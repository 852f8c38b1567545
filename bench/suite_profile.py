"""Where the test suite's time goes: runs pytest (by default as `make test` does) while sampling every process's CPU
time from /proc once a second, and attributes it to the xdist worker and the test that started the process (Celery
workers, vLLM engines and servers, training runs, Chromium) — `getrusage` alone misses children killed with SIGKILL.

    .venv/bin/python bench/suite_profile.py                      # the whole suite, -n <cores + 1> as make test
    .venv/bin/python bench/suite_profile.py -- -n 2 tests/workers  # other pytest arguments after --

Prints: pytest's wall time, the machine's busy and idle CPU over the run (/proc/stat; other sessions' load counts
too, so run it on a quiet machine), CPU and process count by kind of process, when each worker finished, machine
use per minute, the modules and tests that cost the most CPU, and the tests that mostly wait (wall time far above
their CPU). Not part of `make bench`: it runs the whole suite.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
KINDS = (("multiprocessing.spawn", "vLLM engine core / worker (spawned)"), ("VLLM", "vLLM engine core / worker (spawned)"),
         ("vllm.entrypoints", "vLLM API server"), ("celery", "Celery worker"), ("training.grpo.run", "GRPO training run"),
         ("chrom", "Chromium"), ("playwright", "Playwright driver"), ("postgres", "Postgres"),
         ("redis-server", "Redis"), ("exec(eval(sys.stdin", "pytest xdist worker"), ("pytest", "pytest"))


def kind_of(command: str) -> str:
    return next((kind for needle, kind in KINDS if needle in command), "other: " + command[:50])


def cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


class Sampler(threading.Thread):
    """Every second: each process's utime+stime, parent and command line; keeps the CPU each used since the last look
    (a process first seen after the start is counted from its birth)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int, float, list[int]]] = []  # (time, pid, cpu seconds, ancestor pids)
        self.commands: dict[int, str] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        previous: dict[int, int] = {}
        first = True
        while not self.stopping.is_set():
            now, current = time.time(), {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    if int(entry) not in self.commands:
                        raw = Path(f"/proc/{entry}/cmdline").read_bytes()
                        self.commands[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace")[:200]
                except OSError:
                    continue
                fields = stat[stat.rfind(")") + 2:].split()
                current[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
            for pid, (_, ticks) in current.items():
                used = ticks - previous.get(pid, 0 if not first else ticks)
                if used > 0:
                    chain, parent = [], pid
                    while parent in current and len(chain) < 32:
                        chain.append(parent)
                        parent = current[parent][0]
                    self.samples.append((now, pid, used / TICK, chain))
            previous = {pid: ticks for pid, (_, ticks) in current.items()}
            first = False
            self.stopping.wait(1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--top", type=int, default=25, help="rows per table")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments (default: as make test)")
    args = parser.parse_args()
    workers = min((os.cpu_count() or 1) + 1, 8)  # as the Makefile's TEST_WORKERS
    pytest_args = args.pytest_args or ["-n", str(workers if workers >= 3 else 0), "--dist", "loadscope",
                                       "--no-loadscope-reorder"]
    folder = Path(tempfile.mkdtemp(prefix="rubricon-suite-profile-"))
    env = {**os.environ, "RUBRICON_SUITE_TIMELINE": str(folder),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    sampler = Sampler()
    sampler.start()
    before, started = cpu_times(), time.time()
    code = subprocess.call([sys.executable, "-m", "pytest", "-p", "bench._suite_timeline", "-q", *pytest_args],
                           cwd=ROOT, env=env)
    wall, after = time.time() - started, cpu_times()
    sampler.stopping.set()
    sampler.join()
    report(folder, sampler, wall, [b - a for a, b in zip(before, after, strict=True)], args.top)
    return code


def report(folder: Path, sampler: Sampler, wall: float, ticks: list[int], top: int) -> None:
    tests = [json.loads(line) for path in folder.glob("timeline-*.jsonl") for line in path.read_text().splitlines()]
    if not tests:
        print("no test ran")
        return
    by_worker: dict[str, list[dict]] = collections.defaultdict(list)
    for test in tests:
        by_worker[test["worker"]].append(test)
    worker_of_pid = {test["pid"]: test["worker"] for test in tests}
    for runs in by_worker.values():
        runs.sort(key=lambda test: test["t0"])
    start = min(test["t0"] for test in tests)

    def test_at(worker: str, moment: float) -> str:
        for test in by_worker[worker]:
            if test["t0"] - 1 <= moment <= test["t1"] + 1:
                return test["id"]
        return "(between tests: collection, session set-up)"

    busy = sum(ticks) - ticks[3] - ticks[4]
    print(f"\npytest wall {wall:.0f} s; machine CPU busy {busy / TICK:.0f} s, idle {(ticks[3] + ticks[4]) / TICK:.0f} s "
          f"({os.cpu_count()} cores); sampled CPU {sum(cpu for _, _, cpu, _ in sampler.samples):.0f} s")
    kinds: collections.Counter[str] = collections.Counter()
    per_test: collections.Counter[str] = collections.Counter()
    per_minute: collections.Counter[int] = collections.Counter()
    for moment, pid, cpu, chain in sampler.samples:
        kinds[kind_of(sampler.commands.get(pid, ""))] += cpu
        per_minute[int((moment - start) // 60)] += cpu
        worker = next((worker_of_pid[ancestor] for ancestor in chain if ancestor in worker_of_pid), None)
        if worker is not None:
            per_test[test_at(worker, moment)] += cpu
    processes = collections.Counter(kind_of(sampler.commands.get(pid, "")) for pid in {pid for _, pid, _, _ in sampler.samples})
    print("\nCPU seconds by kind of process, and how many such processes used CPU")
    for kind, cpu in kinds.most_common(top):
        print(f"  {cpu:8.1f} {processes[kind]:5d}  {kind}")
    print("\nworkers: tests, first start and last end (s from the first test)")
    for worker, runs in sorted(by_worker.items()):
        print(f"  {worker}: {len(runs)} tests, {runs[0]['t0'] - start:.0f} -> {max(t['t1'] for t in runs) - start:.0f}")
    print("\nmachine use per minute (sampled CPU / cores)")
    cores = os.cpu_count() or 1
    print("  " + " ".join(f"{per_minute[minute] / 60 / cores:.0%}" for minute in range(max(per_minute) + 1)))
    modules: collections.Counter[str] = collections.Counter()
    module_wall: collections.Counter[str] = collections.Counter()
    for test in tests:
        module_wall[test["id"].split("::")[0]] += test["t1"] - test["t0"]
    for test_id, cpu in per_test.items():
        modules[test_id.split("::")[0]] += cpu
    print("\nmodules by CPU (the test process and everything it started): CPU s, wall s")
    for module, cpu in modules.most_common(top):
        print(f"  {cpu:8.1f} {module_wall.get(module, 0):8.1f}  {module}")
    print("\ntests that mostly wait: wall s, CPU s")
    waiting = sorted(tests, key=lambda test: per_test.get(test["id"], 0) - (test["t1"] - test["t0"]))
    for test in waiting[:top]:
        print(f"  {test['t1'] - test['t0']:8.1f} {per_test.get(test['id'], 0):8.1f}  {test['id'][:140]}")


if __name__ == "__main__":
    raise SystemExit(main())
