"""What watching progress inside a chunk costs a generation chunk: the same vLLM engine plays the same episodes with
and without in-chunk progress, alternating, in one process (issue 17: the job must stay ≥ 0.95 × raw vLLM).

    .venv/bin/python bench/job_progress_overhead.py --prompts 32 --n 4 --repeats 3

"With" is what a generation chunk does: `run_episodes(..., on_progress=...)` through vLLM's progress hook into a
`JobProgress` that writes the count on a real GenerationJob row in Postgres from its thread every
RUBRICON_JOB_PROGRESS_S (1 s). "Without" is the same call with no progress. Both share one warm engine, so machine
load hits both sides alike; medians are reported. DATABASE: BENCH_DATABASE (default rubricon_bench_generation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from export_throughput import ensure_database, migrate  # noqa: E402
from generation_throughput import conversations  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["DJANGO_SETTINGS_MODULE"] = "webapp.settings.test"
    database = os.environ.get("BENCH_DATABASE", "rubricon_bench_generation")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    ensure_database(database)
    import django

    django.setup()
    migrate()

    from training.generation import Example, SamplingParams, run_episodes
    from training.generation.environments import SingleTurnEnvironment
    from webapp.core.jobs import JobProgress, job_start
    from webapp.core.models import Project
    from webapp.endpoints.models import EndpointKind, ModelEndpoint
    from webapp.rollouts.engines import backend_config, backend_for
    from webapp.rollouts.models import GenerationJob
    from webapp.tasks.models import Task

    stamp = int(time.time())
    project = Project.objects.create(name=f"bench progress {stamp}", slug=f"bench-progress-{stamp}")
    task = Task.objects.create(project=project, name="bench")
    endpoint = ModelEndpoint.objects.create(project=project, name="vllm", kind=EndpointKind.VLLM, model=args.model)
    backend = backend_for(backend_config(endpoint))
    examples = [Example(id=i, messages=chat) for i, chat in enumerate(conversations(args.prompts))]
    params = SamplingParams(n=args.n, max_tokens=args.max_tokens, temperature=1.0)
    try:
        t0 = time.perf_counter()
        run_episodes(backend, SingleTurnEnvironment, examples[:2], params.model_copy(update={"max_tokens": 4}))
        print(f"engine start + warm-up: {time.perf_counter() - t0:.1f} s", flush=True)

        def without() -> tuple[int, float, int]:
            started = time.perf_counter()
            trajectories = run_episodes(backend, SingleTurnEnvironment, examples, params)
            return sum(t.completion_tokens for t in trajectories), time.perf_counter() - started, 0

        def with_progress() -> tuple[int, float, int]:
            job = GenerationJob.objects.create(project=project, task=task, model_name=args.model)
            job_start(model=GenerationJob, job_id=job.pk, total=args.prompts * args.n)
            started = time.perf_counter()
            with JobProgress(model=GenerationJob, job_id=job.pk) as progress:
                trajectories = run_episodes(backend, SingleTurnEnvironment, examples, params,
                                            on_progress=lambda done, failed: progress.add(done, failed=failed))
            seconds = time.perf_counter() - started
            progress.flush()
            assert GenerationJob.objects.get(pk=job.pk).done == args.prompts * args.n
            return sum(t.completion_tokens for t in trajectories), seconds, progress.writes

        rates: dict[str, list[float]] = {"without": [], "with": []}
        sides = (("with", with_progress), ("without", without))
        for repeat in range(args.repeats):
            for side, run in sides if repeat % 2 == 0 else sides[::-1]:
                tokens, seconds, writes = run()
                rates[side].append(tokens / seconds)
                print(f"run {repeat + 1} {side:>7}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.1f} tok/s"
                      + (f" ({writes} progress writes)" if side == "with" else ""), flush=True)
    finally:
        backend.close()
    with_rate, without_rate = statistics.median(rates["with"]), statistics.median(rates["without"])
    print(json.dumps({"prompts": args.prompts, "n": args.n, "max_tokens": args.max_tokens, "repeats": args.repeats,
                      "without_tok_s": round(without_rate, 1), "with_tok_s": round(with_rate, 1),
                      "ratio": round(with_rate / without_rate, 3), "load_1min": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
