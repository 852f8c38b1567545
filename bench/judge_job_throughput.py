"""Judge jobs end to end (issue 20 item 1): enqueue → real Celery worker(s) → chunks → scores in Postgres → job done,
against a local OpenAI-compatible server with 50 ms latency admitting 32 concurrent requests.

    .venv/bin/python bench/judge_job_throughput.py                        # 20,000 rollouts, 1 then 2 workers
    .venv/bin/python bench/judge_job_throughput.py --rollouts 5000 --threads 2 --chunk-size 256

    DATABASE: rubricon_bench_judge (override with BENCH_DATABASE; created if missing, migrated; never the test database)
    BROKER:   redis://127.0.0.1:6379/5 (override with BENCH_BROKER_URL); the endpoint limits live there too

The server (tests.support.judge_server, its own process) answers every judge prompt after 50 ms and refuses the
33rd concurrent request with 429. Ceiling = 32 / 0.05 s = 640 req/s. The endpoint says max_concurrency=32, which
every worker and thread shares through Redis (webapp.endpoints.limits), so two workers do not make 64.
Each rollout is scored by a rubric with one judge criterion: one call per rollout, 20,000 calls. The judge cache is
emptied and the scores deleted before each run, so every run makes every call. A run is timed from
`judge_job_create` (enqueue) until the job row says succeeded (polled every 50 ms).
Workers run the thread pool (`--threads` chunks at once per worker). Per-chunk timings (scoring, DB write) come
from the workers' log lines. Also printed per run: the workers' CPU per call (user + system of the worker processes
from /proc over the job: the figure that holds on a loaded machine), how full the server was (mean requests in
flight, share of the time at the cap) and the load average. Target: ≥ 0.85 × ceiling with one worker and with two.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from export_throughput import ensure_database, migrate  # noqa: E402

DATABASE = os.environ.get("BENCH_DATABASE", "rubricon_bench_judge")
SPEC = {
    "criteria": [
        {"key": "helpful", "title": "Helpful answer", "kind": "judge", "weight": 1.0,
         "question": "Does the completion answer the prompt correctly and helpfully?",
         "choices": [{"label": "no"}, {"label": "partly"}, {"label": "yes"}]},
    ]
}
CHUNK_LINE = re.compile(r"judge job (\d+) chunk \d+: (\d+) rollouts scored in ([\d.]+) ms, written in ([\d.]+) ms")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=20_000)
    parser.add_argument("--group-size", type=int, default=4, help="rollouts per group (chunks never cut a group)")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--server-concurrency", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="chunks each worker runs at once (thread pool)")
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="rollouts per chunk (default: the RUBRICON_JUDGE_CHUNK_SIZE setting)")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, in order")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per worker count")
    return parser.parse_args()


def setup(args: argparse.Namespace, broker: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings.test"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ["CELERY_BROKER_URL"] = broker
    os.environ["RUBRICON_LIMITS_URL"] = broker
    os.environ["DATABASE_CONN_MAX_AGE"] = "60"  # workers keep their connections, as in production
    if args.chunk_size:
        os.environ["RUBRICON_JUDGE_CHUNK_SIZE"] = str(args.chunk_size)
    ensure_database(DATABASE)
    import django

    django.setup()
    migrate()


def start_server(latency: float, max_concurrent: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.judge_server", "--latency", str(latency),
         "--max-concurrent", str(max_concurrent)],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def server_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=5) as response:
        return json.loads(response.read())


def server_occupancy(before: dict[str, Any], after: dict[str, Any], concurrency: int) -> tuple[float, float]:
    """(mean requests in flight, share of the time with all `concurrency` in flight) at the server between two
    /stats answers: below the cap, the server waited for the client side."""
    levels = {int(k): v - before["in_flight_s"].get(k, 0.0) for k, v in after["in_flight_s"].items()}
    seconds = sum(levels.values()) or 1.0
    return sum(k * v for k, v in levels.items()) / seconds, levels.get(concurrency, 0.0) / seconds


def seed(rollouts: int, group_size: int, base_url: str, concurrency: int) -> tuple[int, int, int]:
    from webapp.core.models import Project
    from webapp.endpoints.models import ModelEndpoint
    from webapp.rollouts.models import Rollout
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.tasks.models import Example, Task

    stamp = int(time.time())
    project = Project.objects.create(name=f"bench judge {stamp}", slug=f"bench-judge-{stamp}")
    task = Task.objects.create(project=project, name="bench")
    groups = (rollouts + group_size - 1) // group_size
    examples = Example.objects.bulk_create(
        Example(task=task, external_id=f"e{i}", prompt=f"What is {i} + {i}?", answer=str(2 * i)) for i in range(groups)
    )
    batch = []
    for i in range(rollouts):
        example = examples[i // group_size]
        batch.append(Rollout(project=project, task=task, example=example, group_key=f"g{i // group_size}",
                             sample_index=i % group_size, completion=f"The answer is {2 * (i // group_size) + i % 2} (sample {i})."))
        if len(batch) == 5000:
            Rollout.objects.bulk_create(batch)
            batch = []
    Rollout.objects.bulk_create(batch)
    rubric = Rubric.objects.create(project=project, task=task, name="bench")
    version = RubricVersion.objects.create(rubric=rubric, number=1, spec=SPEC)
    endpoint = ModelEndpoint.objects.create(project=project, name="bench judge", base_url=base_url, model="stub",
                                            max_concurrency=concurrency, supports_structured_output=True)
    return project.pk, version.pk, endpoint.pk


def start_worker(broker: str, log: Path, name: str, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CELERY_BROKER_URL": broker}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "judge", "--pool", "threads",
             "--concurrency", str(threads), "-n", f"{name}@%h", "--loglevel", "INFO"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def wait_ready(logs: list[Path], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while not all(b"ready." in log.read_bytes() for log in logs):
        if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
            raise SystemExit("a worker did not start:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
        time.sleep(0.2)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset(version_id: int) -> None:
    """Every run pays every call: no cached answers, no scores from the last run."""
    from webapp.judging.models import CriterionScore, JudgeCache, RolloutScore

    JudgeCache.objects.all().delete()
    CriterionScore.objects.filter(rubric_version_id=version_id).delete()
    RolloutScore.objects.filter(rubric_version_id=version_id).delete()


def run_job(project_id: int, version_id: int, endpoint_id: int) -> tuple[int, float]:
    from webapp.core.models import JobStatus, Project
    from webapp.endpoints.models import ModelEndpoint
    from webapp.judging.models import JudgeJob
    from webapp.judging.services import judge_job_create
    from webapp.rubrics.models import RubricVersion

    project = Project.objects.get(pk=project_id)
    started = time.perf_counter()
    job = judge_job_create(project=project, rubric_version=RubricVersion.objects.get(pk=version_id),
                           endpoint=ModelEndpoint.objects.get(pk=endpoint_id))
    deadline = started + 3600
    while True:
        status = JudgeJob.objects.values_list("status", flat=True).get(pk=job.pk)
        if status in JobStatus.finished():
            break
        if time.perf_counter() > deadline:
            raise SystemExit(f"judge job #{job.pk} did not finish in an hour")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    job.refresh_from_db()
    if status != JobStatus.SUCCEEDED or job.failed_count:
        raise SystemExit(f"judge job #{job.pk} ended {status} ({job.failed_count} failed): {job.error}")
    return job.pk, seconds


def baseline(base_url: str, version_id: int, project_id: int, count: int, concurrency: int) -> float:
    """The judge client alone in this process (bench/judge_throughput.py's "concurrent"): same prompts, same server,
    no Celery, no database, an in-memory cache. req/s, measured in the same run as the jobs."""
    import asyncio

    from training.judges.base import CachedJudge, InMemoryJudgeCache
    from training.judges.openai_judge import OpenAIJudge
    from training.llm_client import OpenAICompatibleClient
    from training.rubrics.engine import RubricEngine
    from webapp.judging.services import engine_rollout
    from webapp.rollouts.models import Rollout
    from webapp.rubrics.models import RubricVersion
    from webapp.rubrics.services import rubric_spec_validate

    spec = rubric_spec_validate(RubricVersion.objects.get(pk=version_id).spec)
    rollouts = [engine_rollout(r) for r in Rollout.objects.filter(project_id=project_id).select_related("example")
                .order_by("-pk")[:count]]

    async def run() -> float:
        client = OpenAICompatibleClient(base_url=base_url, model="stub", max_concurrency=concurrency)
        engine = RubricEngine(spec, judge=CachedJudge(OpenAIJudge(client, max_tokens=512), InMemoryJudgeCache()))
        started = time.perf_counter()
        await engine.ascore_many(rollouts)
        seconds = time.perf_counter() - started
        await client.aclose()
        return len(rollouts) / seconds

    return asyncio.run(run())


def chunk_timings(logs: list[Path], job_id: int) -> tuple[list[float], list[float]]:
    scored, written = [], []
    for log in logs:
        for match in CHUNK_LINE.finditer(log.read_text(errors="replace")):
            if int(match.group(1)) == job_id:
                scored.append(float(match.group(3)))
                written.append(float(match.group(4)))
    return scored, written


def main() -> None:
    args = parse_args()
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/5")
    setup(args, broker)

    import redis
    from django.conf import settings

    redis.Redis.from_url(broker).flushdb()  # leftovers of an interrupted run would be delivered to our workers
    ceiling = args.server_concurrency / args.latency
    server, base_url = start_server(args.latency, args.server_concurrency)
    t0 = time.perf_counter()
    project_id, version_id, endpoint_id = seed(args.rollouts, args.group_size, base_url, args.server_concurrency)
    print(f"seeded {args.rollouts} rollouts in {time.perf_counter() - t0:.1f} s; chunk size "
          f"{settings.RUBRICON_JUDGE_CHUNK_SIZE}, {args.threads} thread(s) per worker; ceiling {ceiling:.0f} req/s; "
          f"{os.cpu_count()} CPUs (shared with other users: figures move with their load)", flush=True)
    results = []
    baselines = []
    try:
        for count in [int(n) for n in args.workers.split(",")]:
            logs = [Path(settings.BASE_DIR) / "var" / f"bench-judge-worker-{count}-{i}.log" for i in range(count)]
            logs[0].parent.mkdir(parents=True, exist_ok=True)
            workers = [start_worker(broker, log, f"bench-judge-{i}", args.threads) for i, log in enumerate(logs)]
            try:
                wait_ready(logs, workers)
                for repeat in range(args.repeats):
                    before = server_stats(base_url)
                    rate = baseline(base_url, version_id, project_id, min(args.rollouts, 4000), args.server_concurrency)
                    mean_in_flight, full = server_occupancy(before, server_stats(base_url), args.server_concurrency)
                    baselines.append(rate)
                    print(f"baseline (the judge client alone, no Celery/DB): {rate:.0f} req/s = "
                          f"{rate / ceiling:.3f} x ceiling; mean in flight {mean_in_flight:.1f} (all "
                          f"{args.server_concurrency} busy {100 * full:.0f} % of the time)", flush=True)
                    reset(version_id)
                    before = server_stats(base_url)
                    cpu_before = [process_cpu_s(w.pid) for w in workers]
                    job_id, seconds = run_job(project_id, version_id, endpoint_id)
                    after = server_stats(base_url)
                    cpu = sum(process_cpu_s(w.pid) for w in workers) - sum(cpu_before)
                    calls = after["requests"] - before["requests"]
                    rejected = after["rejected"] - before["rejected"]
                    rate = (calls - rejected) / seconds
                    time.sleep(0.5)  # the last chunk's log line
                    scored, written = chunk_timings(logs, job_id)
                    cpu_ms = cpu * 1000 / max(1, calls - rejected)
                    mean_in_flight, full = server_occupancy(before, after, args.server_concurrency)
                    results.append((count, rate / ceiling, rate / baselines[-1], cpu_ms))
                    print(f"{count} worker(s) run {repeat + 1}: {args.rollouts} rollouts in {seconds:.2f} s = "
                          f"{rate:.0f} req/s = {rate / ceiling:.3f} x ceiling; {calls} requests ({rejected} refused "
                          f"429), max in flight {after['max_in_flight']}, mean {mean_in_flight:.1f} (all "
                          f"{args.server_concurrency} busy {100 * full:.0f} % of the time); {len(written)} chunks, DB write per chunk "
                          f"median {statistics.median(written):.1f} ms (p90 "
                          f"{statistics.quantiles(written, n=10)[-1]:.1f} ms, "
                          f"{statistics.median(written) / (args.rollouts / len(written)):.3f} ms/rollout), "
                          f"scoring per chunk median {statistics.median(scored):.0f} ms; worker CPU {cpu_ms:.2f} ms per call "
                          f"(all worker processes, user + system); load average {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                stop(workers)
    finally:
        server.terminate()
        server.wait(10)
    print("\nworkers  x ceiling  target 0.85  x client-alone baseline (same run)  worker CPU ms/call")
    for count, ratio, vs_baseline, cpu_ms in results:
        print(f"{count:>7}  {ratio:>9.3f}  {'pass' if ratio >= 0.85 else 'FAIL':>11}  {vs_baseline:>9.3f}"
              f"  {cpu_ms:>38.2f}")
    from bench._results import emit

    for count, ratio, vs_baseline, _cpu_ms in results:
        emit("judge jobs", f"{count} worker(s): req/s × ceiling", ratio, 0.85, higher_is_better=True)
        emit("judge jobs", f"{count} worker(s): × client alone (same run)", vs_baseline, 0.85, higher_is_better=True)


if __name__ == "__main__":
    main()
