"""50 annotators labeling at once for 60 s against a local gunicorn server: latency and label integrity.

    .venv/bin/python bench/annotator_load.py [--annotators 50] [--seconds 60] [--think 2] [--warmup 0]
                                             [--workers N --threads N]   # default: webapp/gunicorn.conf.py's

    DATABASE: rubricon_bench_annotators (created if missing, migrated, emptied; never the test database)

The server is the deployed one: gunicorn with `webapp/gunicorn.conf.py` (as docker-compose and the Dockerfile start
it) and persistent database connections as in production (`DATABASE_CONN_MAX_AGE=60`; the test settings it reuses
for everything else close them after each request, which cost a new Postgres backend per request).

Each annotator is a thread with its own HTTP session: GET next once (reserves an item with SELECT ... FOR UPDATE SKIP
LOCKED, redirects to it) → GET the labeling page → read for `--think` seconds (jittered ±50 %) → POST the two
criteria (submit, which reserves the following item and redirects straight to its page; to `next` when the queue is
done for them), and again. All annotators start at the same instant on a freshly started server; `--warmup S`
reports the first S seconds on their own line and measures the `--seconds` after them. The run is bounded: a fixed
number of threads, a deadline, no retries. Afterwards the database is checked: every accepted submit left exactly
its labels (none lost), no annotator has two labels of one criterion of one rollout (unique constraint), and no item
holds more done labels than reviewers_per_item (none duplicated). Targets: p95 ≤ 150 ms, 0 lost or duplicated labels.

`--think 0` makes it a closed-loop throughput test: 50 clients that never pause keep every core busy, so latency ≈
clients / throughput (≈ 50 / 120 per second on 2 cores, whatever the code does per request).
gunicorn keeps an idle connection open for `--keep-alive` seconds (default: longer than the longest pause); with
gunicorn's own 2 s a submit after a longer pause raced the server closing the connection and failed with a ReadError.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import runpy
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from export_throughput import django_setup, ensure_database, migrate  # noqa: E402

SPEC = {"criteria": [
    {"key": "helpful", "title": "Helpful", "kind": "judge", "question": "Is {{ completion }} helpful?",
     "choices": [{"label": "no"}, {"label": "partly"}, {"label": "yes"}]},
    {"key": "correct", "title": "Correct", "kind": "match", "extract": "answer_tag", "mode": "numeric"},
]}


def seed(annotators: int, items: int, reviewers: int) -> tuple[int, int, list[str]]:
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from webapp.core.models import Membership, Project, Role
    from webapp.reviews.services import review_queue_create
    from webapp.rollouts.models import Rollout
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.tasks.models import Task

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE core_project, auth_user, django_session CASCADE")
    project = Project.objects.create(name="load", slug="load")
    task = Task.objects.create(project=project, name="load")
    version = RubricVersion.objects.create(rubric=Rubric.objects.create(project=project, name="load"), number=1, spec=SPEC)
    Rollout.objects.bulk_create(
        Rollout(project=project, task=task, group_key=f"g{i // 4}", sample_index=i % 4,
                completion=f"<answer>{i}</answer> " + "text " * 40)
        for i in range(items)
    )
    users = get_user_model()
    SessionStore = import_module(settings.SESSION_ENGINE).SessionStore  # noqa: N806
    sessions = []
    for i in range(annotators):
        user = users.objects.create_user(f"annotator{i}", password="pw")
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        # A logged-in session without the login page's password hashing in the measurement.
        store = SessionStore()
        store["_auth_user_id"] = str(user.pk)
        store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        store["_auth_user_hash"] = user.get_session_auth_hash()
        store.create()
        sessions.append(store.session_key)
    queue = review_queue_create(project=project, name="load", rubric_version=version, size=items,
                                reviewers_per_item=reviewers, blind=True)
    return project.pk, queue.pk, sessions


class CpuMeter:
    """CPU seconds spent by the server (gunicorn workers), by the Postgres backends serving the bench database and by
    this process (the load generator) from now until `stop()`: on a shared machine, latency depends on what else
    runs, CPU per request does not."""

    def __init__(self, server_pid: int, database: str) -> None:
        import psutil

        self.server_process, self.database = psutil.Process(server_pid), database
        self.me = psutil.Process()
        self.server_start = self._server()
        self.client_start = self._total(self.me)
        self.backends: dict[int, tuple[float, float]] = {}  # pid -> (first seen, last seen) CPU seconds
        self._poll()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _total(process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    def _server(self) -> float:
        import psutil

        total = 0.0
        for process in [self.server_process, *self.server_process.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += self._total(process)
        return total

    def _poll(self) -> None:
        import psutil
        import psycopg

        # Backends opened during the run started at 0 CPU; those present now count from now.
        first = not self.backends
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{self.database}", autocommit=True) as conn:
            pids = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [self.database])]
        for pid in pids:
            try:
                used = self._total(psutil.Process(pid))
            except psutil.Error:
                continue
            start = self.backends.get(pid, (used if first else 0.0, 0.0))[0]
            self.backends[pid] = (start, used)

    def _loop(self) -> None:
        while not self._done.wait(1.0):
            self._poll()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        self._poll()
        self.server = self._server() - self.server_start
        self.client = self._total(self.me) - self.client_start
        self.postgres = sum(last - first for first, last in self.backends.values())


def annotator(base: str, project: int, queue: int, session: str, deadline: float, out: dict, lock: threading.Lock,
              think: float = 0.0) -> None:
    import random

    import httpx

    latencies: list[tuple[str, float, float]] = []  # (request, started at, seconds)
    submitted, errors = 0, 0
    kinds: dict[str, int] = {}
    with httpx.Client(base_url=base, cookies={"sessionid": session}, timeout=10, follow_redirects=False) as client:
        url = f"/p/{project}/review/{queue}/next/"
        while time.perf_counter() < deadline:
            try:
                if "/items/" not in url:
                    t = time.perf_counter()
                    response = client.get(url)
                    latencies.append(("next", t, time.perf_counter() - t))
                    if response.status_code != 302:
                        break  # nothing left for this annotator
                    url = response.headers["location"]
                item_url = url
                t = time.perf_counter()
                page = client.get(item_url)
                latencies.append(("page", t, time.perf_counter() - t))
                item = re.search(r"/items/(\d+)/", item_url).group(1)  # type: ignore[union-attr]
                token = client.cookies.get("csrftoken") or re.search(
                    r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
                if think:
                    time.sleep(think * random.uniform(0.5, 1.5))
                data = {"csrfmiddlewaretoken": token, "row_version-helpful": "0", "choice-helpful": "yes",
                        "row_version-correct": "0", "choice-correct": "Pass"}
                t = time.perf_counter()
                done = client.post(f"/p/{project}/review/{queue}/items/{item}/submit/", data=data,
                                   headers={"Referer": base + item_url})
                latencies.append(("submit", t, time.perf_counter() - t))
                if done.status_code == 302:
                    submitted += 1
                    url = done.headers["location"]
                else:
                    errors += 1
                    kinds[f"submit {done.status_code}"] = kinds.get(f"submit {done.status_code}", 0) + 1
            except httpx.HTTPError as error:
                errors += 1
                kinds[type(error).__name__] = kinds.get(type(error).__name__, 0) + 1
    with lock:
        out["latencies"].extend(latencies)
        out["submitted"][session] = submitted
        out["errors"] += errors
        for kind, n in kinds.items():
            out["kinds"][kind] = out["kinds"].get(kind, 0) + n


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds, after the warm-up")
    parser.add_argument("--warmup", type=float, default=0,
                        help="seconds of labeling before the measurement starts (reported on their own line)")
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--reviewers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="default: webapp/gunicorn.conf.py's")
    parser.add_argument("--threads", type=int, default=None, help="default: webapp/gunicorn.conf.py's")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--think", type=float, default=2.0, help="seconds an annotator reads an item before submitting")
    parser.add_argument("--keep-alive", type=float, default=None,
                        help="gunicorn's idle keep-alive in seconds (default: 1.5 × think + 2, at least 5)")
    parser.add_argument("--database", default="rubricon_bench_annotators")
    parser.add_argument("--gunicorn-args", default="", help="more gunicorn arguments, e.g. '-c webapp/gunicorn.conf.py'")
    args = parser.parse_args()
    keep_alive = args.keep_alive if args.keep_alive is not None else max(5.0, 1.5 * args.think + 2)
    deployed = runpy.run_path(str(ROOT / "webapp" / "gunicorn.conf.py"))
    args.workers = args.workers or deployed["workers"]
    args.threads = args.threads or deployed["threads"]
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    ensure_database(args.database)
    django_setup(args.database)
    migrate()
    project, queue, sessions = seed(args.annotators, args.items, args.reviewers)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.test",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{args.database}",
           "DATABASE_CONN_MAX_AGE": "60"}  # production's persistent connections (the test settings close them)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "webapp/gunicorn.conf.py", "webapp.wsgi:application",
         "-b", f"127.0.0.1:{args.port}", "-w", str(args.workers), "--threads", str(args.threads),
         "--keep-alive", str(int(keep_alive + 0.999)), "--log-level", "warning",
         "--access-logfile", "/dev/null", *args.gunicorn_args.split()],  # each request's log line, not shown
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{args.port}"
        for _ in range(100):
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        time.sleep(2)  # every worker booted: their imports are not the requests' CPU
        out: dict = {"latencies": [], "submitted": {}, "errors": 0, "kinds": {}}
        lock = threading.Lock()
        measure_from = time.perf_counter() + args.warmup
        deadline = measure_from + args.seconds
        threads = [threading.Thread(target=annotator, args=(base, project, queue, s, deadline, out, lock, args.think))
                   for s in sessions]
        cpu = None if args.warmup else CpuMeter(server.pid, args.database)
        for t in threads:
            t.start()
        if cpu is None:
            time.sleep(max(0.0, measure_from - time.perf_counter()))
            cpu = CpuMeter(server.pid, args.database)
        for t in threads:
            t.join()
        cpu.stop()
        elapsed = time.perf_counter() - measure_from
    finally:
        server.terminate()
        server.wait(15)

    from django.db.models import Count

    from webapp.reviews.models import AssignmentStatus, HumanLabel, ReviewAssignment, ReviewItem

    measured = [(kind, seconds) for kind, at, seconds in out["latencies"] if at >= measure_from]
    warmup = [seconds for _, at, seconds in out["latencies"] if at < measure_from]
    latencies = sorted(seconds for _, seconds in measured)
    p = lambda q: percentile(latencies, q)  # noqa: E731
    by_kind: dict[str, list[float]] = {}
    for kind, seconds in measured:
        by_kind.setdefault(kind, []).append(seconds)
    accepted = sum(out["submitted"].values())
    labels = HumanLabel.objects.filter(queue_id=queue).count()
    done = ReviewAssignment.objects.filter(item__queue_id=queue, status=AssignmentStatus.DONE).count()
    lost = accepted * len(SPEC["criteria"]) - labels
    over = ReviewItem.objects.filter(queue_id=queue, completed_count__gt=args.reviewers).count()
    twice = (HumanLabel.objects.filter(queue_id=queue).values("rollout_id", "criterion_key", "annotator_id")
             .annotate(n=Count("pk")).filter(n__gt=1).count())
    print(f"{args.annotators} annotators (think {args.think:g} s) × {elapsed:.0f} s against gunicorn ({args.workers} workers × {args.threads} threads, keep-alive {keep_alive:g} s),"
          f" {len(latencies):,} requests ({len(latencies) / elapsed:.0f}/s) after {args.warmup:g} s of warm-up; {accepted:,} items submitted in all, {out['errors']} errors"
          f"{' ' + str(out['kinds']) if out['kinds'] else ''}")
    if warmup:
        warmup.sort()
        print(f"  warm-up (all annotators start at once on a fresh server): {len(warmup):,} requests,"
              f" p50 {percentile(warmup, 0.5) * 1000:.0f} ms, p95 {percentile(warmup, 0.95) * 1000:.0f} ms,"
              f" max {warmup[-1] * 1000:.0f} ms")
    print(f"  latency p50 {p(0.5) * 1000:.0f} ms, p95 {p(0.95) * 1000:.0f} ms, p99 {p(0.99) * 1000:.0f} ms,"
          f" max {latencies[-1] * 1000:.0f} ms (target p95 ≤ 150 ms); mean {statistics.mean(latencies) * 1000:.0f} ms")
    for kind, values in sorted(by_kind.items()):
        values.sort()
        print(f"    {kind:>6}: {len(values):,} requests, p50 {percentile(values, 0.5) * 1000:.0f} ms,"
              f" p95 {percentile(values, 0.95) * 1000:.0f} ms, p99 {percentile(values, 0.99) * 1000:.0f} ms")
    n = len(latencies) or 1
    print(f"  CPU per request (independent of other load on the machine): gunicorn {cpu.server * 1000 / n:.1f} ms,"
          f" Postgres {cpu.postgres * 1000 / n:.1f} ms, load generator {cpu.client * 1000 / n:.1f} ms;"
          f" load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"  integrity: {labels:,} labels for {accepted:,} accepted submits × 2 criteria → lost {lost};"
          f" done assignments {done:,} (accepted − done = {accepted - done}); items over reviewers_per_item {over}; duplicate labels {twice}")
    from _results import emit

    name = f"annotators ({args.annotators})"
    emit(name, "p95 submit/next latency", p(0.95) * 1000, 150, higher_is_better=False, unit="ms")
    emit(name, "labels lost + duplicated + over-filled", abs(lost) + twice + over, 0, higher_is_better=False)
    emit(name, "gunicorn CPU per request (no target)", cpu.server * 1000 / n, float("inf"), higher_is_better=False,
         unit="ms")


if __name__ == "__main__":
    main()
