"""Rollout browser at scale: p95 page time for the first page, a deep page and a filtered page over 1,000,000
rollouts with their scores, and the query count of each (must not grow with depth).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rubricon_bench_browser .venv/bin/python bench/rollout_browser.py \
        [--rollouts 1000000] [--repeat 30]

Seeds by COPY into its own database (reused when already seeded), then renders the real view through Django's
test client (URL routing, middleware, permission check, selectors, template) — the server time of a page.
Target (issue 4): p95 ≤ 100 ms for each page, constant query count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rubricon_bench_browser")


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed(n: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from webapp.core.models import Membership, Project, Role
    from webapp.rollouts.models import Rollout
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.tasks.models import Example, Task

    user, _ = get_user_model().objects.get_or_create(username="bench")
    project, _ = Project.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    Membership.objects.get_or_create(project=project, user=user, defaults={"role": Role.VIEWER})
    tasks = [Task.objects.get_or_create(project=project, name=f"task-{i}")[0] for i in range(4)]
    examples = []
    for task in tasks:
        for i in range(50):
            examples.append(Example.objects.get_or_create(task=task, external_id=f"{task.name}-{i}",
                                                          defaults={"prompt": f"What is {i} + 1?", "answer": str(i + 1)})[0])
    rubric, _ = Rubric.objects.get_or_create(project=project, name="bench")
    version, _ = RubricVersion.objects.get_or_create(rubric=rubric, number=1, defaults={"spec": {"criteria": []}})
    have = Rollout.objects.filter(project=project).count()
    if have < n:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            raw = cursor.connection
            with raw.cursor().copy(
                "COPY rollouts_rollout (project_id, task_id, example_id, source, model_name, group_key, sample_index,"
                " prompt_messages, messages, completion, finish_reason, error, metadata, created_at) FROM STDIN"
            ) as copy:
                for i in range(have, n):
                    example = examples[(i // 8) % len(examples)]
                    copy.write_row((project.pk, example.task_id, example.pk, "generation", f"model-{i % 3}",
                                    f"g{i // 8}", i % 8, "[]", "[]", f"The answer is {i % 97}. <answer>{i % 97}</answer>",
                                    "stop", "", "{}", "2026-01-01T00:00:00Z"))
        print(f"seeded {n - have:,} rollouts by COPY in {time.perf_counter() - started:.0f} s")
    # Ids first: one connection cannot read a cursor while it is feeding a COPY.
    unscored = list(Rollout.objects.filter(project=project, scores__isnull=True).values_list("pk", flat=True))
    if unscored:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.connection.cursor().copy(
                "COPY judging_rolloutscore (rollout_id, rubric_version_id, judge_fingerprint, total, gated_by, error,"
                " created_at) FROM STDIN"
            ) as copy:
                for rollout_id in unscored:
                    copy.write_row((rollout_id, version.pk, "programmatic", (rollout_id % 100) / 100, "", "",
                                    "2026-01-01T00:00:00Z"))
            cursor.execute("ANALYZE")
        print(f"seeded {len(unscored):,} scores by COPY in {time.perf_counter() - started:.0f} s")
    return {"user": user, "project": project, "task": tasks[1], "version": version}


def measure(client, url: str, repeat: int) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], len(queries.captured_queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    world = seed(args.rollouts)
    client = Client()
    client.force_login(world["user"])
    base = reverse("rollouts:list", args=[world["project"].pk])
    from webapp.rollouts.models import Rollout

    ids = Rollout.objects.filter(project=world["project"]).order_by("pk").values_list("pk", flat=True)
    middle = ids[args.rollouts // 2]
    pages = {
        "first page": base,
        "first page + scores": f"{base}?rubric_version={world['version'].pk}",
        "deep page (middle)": f"{base}?before={middle}",
        "filtered: task + score 0.2–0.4": f"{base}?task={world['task'].pk}&rubric_version={world['version'].pk}"
                                           f"&score_min=0.2&score_max=0.4",
        "filtered, deep": f"{base}?task={world['task'].pk}&source=generation&before={middle}",
        "text search 'answer is 42'": f"{base}?q=answer+is+42",
    }
    print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for name, url in pages.items():
        median, p95, queries = measure(client, url, args.repeat)
        print(f"{name:34} {median:10.1f} {p95:8.1f} {queries:8d}")


if __name__ == "__main__":
    main()
