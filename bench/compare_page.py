"""Side-by-side comparison at scale: server time of the comparison page (two generation jobs of N examples each,
both scored) sorted by the difference, on its first and last page and with a text filter, and the query count of
each (must not grow with the page or the number of rows).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rubricon_bench_compare .venv/bin/python bench/compare_page.py \
        [--examples 10000] [--repeat 10]

Seeds with INSERT … SELECT generate_series into its own database (reused when already seeded), then renders the real
view through Django's test client (routing, middleware, permission and blind checks, selector, template).

Also a training run (RUN_STEPS steps of RUN_GROUPS prompts × 8 samples, prompts cycling over the examples): "job vs
run" pairs each of the base job's rollouts with the run's newest rollout of the same example and sample, and "step vs
step" two steps of the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.export_throughput import ensure_database  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rubricon_bench_compare")


RUN_STEPS, RUN_GROUPS, RUN_SAMPLES = 200, 32, 8


def seed(n: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from webapp.core.models import Membership, Project, Role
    from webapp.rollouts.models import GenerationJob
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.runs.models import TrainingRun
    from webapp.tasks.models import Task

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project, _ = Project.objects.get_or_create(slug="bench-compare", defaults={"name": "Bench compare"})
    Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.EDITOR})
    task, _ = Task.objects.get_or_create(project=project, name="sums")
    rubric, _ = Rubric.objects.get_or_create(project=project, name="bench")
    version, _ = RubricVersion.objects.get_or_create(rubric=rubric, number=1, defaults={"spec": {"criteria": []}})
    jobs = [GenerationJob.objects.get_or_create(project=project, task=task, model_name=name)[0]
            for name in ("base", "tuned")]
    if task.examples.count() < n:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO tasks_example (task_id, external_id, prompt, messages, answer, info, checklist, split,"
                " created_at, row_version) SELECT %(task)s, 'ex-' || i, 'What is ' || i || ' + 1?', NULL,"
                " (i + 1)::text, '{}'::jsonb, '[]'::jsonb, CASE WHEN i %% 5 = 0 THEN 'eval' ELSE 'train' END,"
                " now(), 1"
                " FROM generate_series(0, %(n)s - 1) AS i", {"task": task.pk, "n": n})
            for k, job in enumerate(jobs):
                cursor.execute(
                    "INSERT INTO rollouts_rollout (project_id, task_id, example_id, job_id, source, model_name,"
                    " group_key, sample_index, prompt_messages, messages, completion, finish_reason, error, metadata,"
                    " created_at) SELECT %(project)s, %(task)s, e.id, %(job)s, 'generation', %(model)s,"
                    " %(model)s || e.id, 0, '[]'::jsonb, '[]'::jsonb, 'The answer is <answer>' || (e.id %% 97) ||"
                    " '</answer>', 'stop', '', '{}'::jsonb, now() FROM tasks_example e WHERE e.task_id = %(task)s",
                    {"project": project.pk, "task": task.pk, "job": job.pk, "model": job.model_name})
                cursor.execute(
                    "INSERT INTO judging_rolloutscore (rollout_id, rubric_version_id, judge_fingerprint, total,"
                    " gated_by, error, created_at) SELECT r.id, %(version)s, 'programmatic',"
                    " ((r.example_id * %(mult)s) %% 100) / 100.0, '', '', now() FROM rollouts_rollout r"
                    " WHERE r.job_id = %(job)s", {"version": version.pk, "job": job.pk, "mult": 7 + 6 * k})
            cursor.execute("ANALYZE")
        print(f"seeded {n:,} examples × 2 jobs with scores in {time.perf_counter() - started:.0f} s")
    run, created = TrainingRun.objects.get_or_create(project=project, name="bench-run", task=task,
                                                     rubric_version=version, defaults={"base_model": "bundled"})
    if created:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO rollouts_rollout (project_id, task_id, example_id, run_id, step, source, model_name,"
                " group_key, sample_index, prompt_messages, messages, completion, finish_reason, error, metadata,"
                " created_at) SELECT %(project)s, %(task)s, e.id, %(run)s, s, 'training', 'run', 'g' || s || '-' || g,"
                " k, '[]'::jsonb, '[]'::jsonb, 'The answer is <answer>' || ((e.id + s) %% 97) || '</answer>', 'stop',"
                " '', '{}'::jsonb, now() FROM generate_series(1, %(steps)s) AS s, generate_series(0, %(groups)s - 1)"
                " AS g, generate_series(0, %(samples)s - 1) AS k JOIN LATERAL (SELECT id FROM tasks_example WHERE"
                " task_id = %(task)s ORDER BY id OFFSET ((s * %(groups)s + g) %% %(n)s) LIMIT 1) e ON true",
                {"project": project.pk, "task": task.pk, "run": run.pk, "steps": RUN_STEPS, "groups": RUN_GROUPS,
                 "samples": RUN_SAMPLES, "n": n})
            cursor.execute(
                "INSERT INTO judging_rolloutscore (rollout_id, rubric_version_id, judge_fingerprint, total,"
                " gated_by, error, created_at) SELECT r.id, %(version)s, 'programmatic',"
                " ((r.id * 13) %% 100) / 100.0, '', '', now() FROM rollouts_rollout r WHERE r.run_id = %(run)s",
                {"version": version.pk, "run": run.pk})
            cursor.execute("ANALYZE")
        print(f"seeded a run of {RUN_STEPS} steps × {RUN_GROUPS} prompts × {RUN_SAMPLES} samples in "
              f"{time.perf_counter() - started:.0f} s")
    return {"user": user, "project": project, "version": version, "jobs": jobs, "run": run}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"].rsplit("/", 1)[1])

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    world = seed(args.examples)
    client = Client()
    client.force_login(world["user"])
    base, tuned = world["jobs"]
    url = (reverse("compare:view", args=[world["project"].pk])
           + f"?a_job={base.pk}&b_job={tuned.pk}&a_version={world['version'].pk}&sort=diff")
    last = -(-args.examples // 25)
    run = world["run"]
    versus_run = (reverse("compare:view", args=[world["project"].pk])
                  + f"?a_job={base.pk}&b_run={run.pk}&a_version={world['version'].pk}&sort=diff")
    steps = (reverse("compare:view", args=[world["project"].pk])
             + f"?a_run={run.pk}&a_steps=10&b_steps={RUN_STEPS}&a_version={world['version'].pk}&sort=diff")
    pages = {"first page": url, "last page": f"{url}&page={last}", "text filter": f"{url}&q=answer%20is%20%3Canswer%3E42",
             "split eval, |Δ| ≥ 0.5": f"{url}&split=eval&diff_min=0.5", "job vs run, first page": versus_run,
             "run step vs step": steps}
    print(f"{args.examples:,} examples × 2 jobs, {args.repeat} requests each (htmx partial)")
    for name, target in pages.items():
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(target, headers={"HX-Request": "true"})
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.status_code
        times.sort()
        p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
        print(f"  {name:24} median {statistics.median(times):7.1f} ms  p95 {p95:7.1f} ms  "
              f"queries {len(queries.captured_queries)}")


if __name__ == "__main__":
    main()
