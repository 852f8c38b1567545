"""Rollout browser at scale: p95 page time for the first page, a deep page and a filtered page over 1,000,000
rollouts with their scores, and the query count of each (must not grow with depth).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rubricon_bench_browser .venv/bin/python bench/rollout_browser.py \
        [--rollouts 1000000] [--repeat 30]

Seeds with INSERT … SELECT generate_series into its own database (reused when already seeded), then renders the real
view through Django's test client (URL routing, middleware, permission check, selectors, template) — the server time
of a page. Target (issue 4): p95 ≤ 100 ms for each page, constant query count.

Text search (issue 20): p95 of rare and absent terms ≤ 100 ms, of three or more characters (trigram index) and
shorter (the opt-in character-pair index), and common terms no slower: measured with both indexes and, in the same run
on the same rows, with the trigram index only (the default) and with neither (each dropped in a transaction that is
rolled back), plus the indexes' sizes and build times; `--no-search` skips it. The character-pair index is built for
the run through its service (as `manage.py search_index short-terms --enable` does) when the database does not have it,
and dropped again at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._results import emit  # noqa: E402
from bench.export_throughput import ensure_database  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/rubricon_bench_browser")


SEARCH_INDEX = "rollout_completion_trgm"  # made by migration rollouts.0002_rollout_text_trgm
PAIRS_INDEX = "rollout_completion_grams"  # opt-in: webapp.rollouts.search_index
RARE_TERM = "quetzalcoatl"
RARE_ROWS = 10
ABSENT_TERM = "xylophonist"
SEARCH_TARGET_MS = 100


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
    with connection.cursor() as cursor:
        if have < n:
            started = time.perf_counter()
            # Rows built by Postgres itself (generate_series): minutes faster than streaming them from Python.
            cursor.execute(
                "INSERT INTO rollouts_rollout (project_id, task_id, example_id, source, model_name, group_key,"
                " sample_index, prompt_messages, messages, completion, finish_reason, error, metadata, created_at)"
                " SELECT %(project)s, (%(tasks)s::bigint[])[(i / 8) %% %(count)s + 1],"
                " (%(examples)s::bigint[])[(i / 8) %% %(count)s + 1], 'generation', 'model-' || i %% 3, 'g' || i / 8,"
                " i %% 8, '[]'::jsonb, '[]'::jsonb,"
                " 'The answer is ' || i %% 97 || '. <answer>' || i %% 97 || '</answer>', 'stop', '', '{}'::jsonb,"
                " '2026-01-01T00:00:00Z'::timestamptz FROM generate_series(%(start)s, %(stop)s) AS i",
                {"project": project.pk, "tasks": [e.task_id for e in examples], "examples": [e.pk for e in examples],
                 "count": len(examples), "start": have, "stop": n - 1},
            )
            print(f"seeded {n - have:,} rollouts by INSERT … SELECT in {time.perf_counter() - started:.0f} s")
        # A rare word in exactly RARE_ROWS rollouts spread over the whole id range, for the text search pages.
        cursor.execute("UPDATE rollouts_rollout SET completion = replace(completion, %s, '') WHERE project_id = %s"
                       " AND completion LIKE %s", [f" {RARE_TERM}", project.pk, f"%{RARE_TERM}%"])
        for k in range(RARE_ROWS):
            cursor.execute("UPDATE rollouts_rollout SET completion = completion || %s WHERE id = (SELECT id FROM"
                           " rollouts_rollout WHERE project_id = %s ORDER BY id OFFSET %s LIMIT 1)",
                           [f" {RARE_TERM}", project.pk, k * n // RARE_ROWS + 7])
        started = time.perf_counter()
        cursor.execute(
            "INSERT INTO judging_rolloutscore (rollout_id, rubric_version_id, judge_fingerprint, total, gated_by, error,"
            " created_at) SELECT r.id, %s, 'programmatic', (r.id %% 100) / 100.0, '', '', '2026-01-01T00:00:00Z'"
            " FROM rollouts_rollout r WHERE r.project_id = %s AND NOT EXISTS"
            " (SELECT 1 FROM judging_rolloutscore s WHERE s.rollout_id = r.id)",
            [version.pk, project.pk],
        )
        if cursor.rowcount:
            print(f"seeded {cursor.rowcount:,} scores by INSERT … SELECT in {time.perf_counter() - started:.0f} s")
        # What autovacuum does in a running database: fold the trigram index's pending list in, refresh statistics.
        for index in (SEARCH_INDEX, PAIRS_INDEX):  # the character-pair index only where it is enabled
            cursor.execute("SELECT gin_clean_pending_list(i) FROM to_regclass(%s) AS i WHERE i IS NOT NULL", [index])
        cursor.execute("ANALYZE rollouts_rollout")
        cursor.execute("ANALYZE judging_rolloutscore")
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
    parser.add_argument("--no-search", dest="search", action="store_false",
                        help="skip the text search comparison (with vs without the trigram index)")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"].rsplit("/", 1)[1])

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
    }
    print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for name, url in pages.items():
        median, p95, queries = measure(client, url, args.repeat)
        print(f"{name:34} {median:10.1f} {p95:8.1f} {queries:8d}")
        emit(f"rollout browser ({args.rollouts:,})", f"{name}: p95", p95, 100, higher_is_better=False, unit="ms")
    if args.search:
        from webapp.rollouts.search_index import (
            short_terms_index_disable,
            short_terms_index_enable,
            short_terms_index_status,
        )

        enabled_here = not short_terms_index_status().valid
        if enabled_here:
            started = time.perf_counter()
            short_terms_index_enable()
            print(f"built {PAIRS_INDEX} CONCURRENTLY, with ANALYZE, in {time.perf_counter() - started:.0f} s")
        try:
            search(client, base, middle, args.repeat)
        finally:
            if enabled_here:
                short_terms_index_disable()


def search(client, base: str, middle: int, repeat: int) -> None:
    """Text search pages (issue 20) in three configurations, search by search in the same run and on the same rows:
    "new" (the trigram index and the character-pair index), "today" (the character-pair index dropped: the selector
    then sends the query it sent before that index existed, after its statistics look-up) and "none" (both dropped,
    before issue 20). Indexes are dropped inside a transaction that is rolled back. Then each index's size and build
    time, and ANALYZE with and without the character-pair index."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    searches = {
        f"rare term ({RARE_ROWS} rows)": f"{base}?q={RARE_TERM}",
        "absent term": f"{base}?q={ABSENT_TERM}",
        "rare term, deep (cursor at middle)": f"{base}?q={RARE_TERM}&before={middle}",
        "common: 'answer is 42' (1 in 97)": f"{base}?q=answer+is+42",
        "common: 'answer' (every row)": f"{base}?q=answer",
        "absent two-letter 'zq'": f"{base}?q=zq",
        f"rare two-letter 'tz' ({RARE_ROWS} rows)": f"{base}?q=tz",
        "absent one character '€'": f"{base}?q=%E2%82%AC",
        "absent short words 'x q'": f"{base}?q=x+q",
        "two-letter '42' (1 in 97)": f"{base}?q=42",
        "common two-letter 'th' (every row)": f"{base}?q=th",
        "common two-letter 'is' (every row)": f"{base}?q=is",
    }

    def plan(url: str) -> str:
        """The scan nodes of the plans of the page's search queries: what the planner chose at this size."""
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        sqls = [q["sql"] for q in queries.captured_queries if " LIKE " in q["sql"] or "@> rollout_term_grams" in q["sql"]]
        if not sqls:
            return "no query"
        nodes = []
        for sql in sqls:
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN {sql}")
                lines = [row[0].strip().removeprefix("->  ") for row in cursor.fetchall()]
            nodes.append(", ".join(line.split("  (")[0] for line in lines if "Scan" in line))
        return "; then ".join(nodes)

    def one(phase: str, name: str, url: str) -> tuple[float, float, int, str]:
        started = time.perf_counter()
        client.get(url)
        slow = time.perf_counter() - started > 0.3  # a scan of the table: fewer repeats
        median, p95, queries = measure(client, url, max(3, repeat // 6) if slow else repeat)
        print(f"  {phase:6} {name:38} median {median:7.1f} p95 {p95:7.1f} ms, {queries} queries", flush=True)
        return median, p95, queries, plan(url)

    def timed(sql: str) -> float:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(sql)
        return time.perf_counter() - started

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef(%s::regclass), pg_get_indexdef(%s::regclass)",
                       [SEARCH_INDEX, PAIRS_INDEX])
        trigram_ddl, pairs_ddl = cursor.fetchone()
        cursor.execute("SELECT pg_relation_size(%s::regclass), pg_relation_size(%s::regclass),"
                       " pg_relation_size('rollouts_rollout'), pg_total_relation_size('rollouts_rollout')",
                       [SEARCH_INDEX, PAIRS_INDEX])
        trigram_size, pairs_size, table_size, total_size = cursor.fetchone()
        cursor.execute("SELECT current_setting('max_parallel_maintenance_workers'), current_setting('maintenance_work_mem')")
        workers, maintenance_mem = cursor.fetchone()
    # The configurations alternate search by search, so that a change of load on the shared machine falls on all three.
    results: dict[str, dict[str, tuple[float, float, int, str]]] = {"new": {}, "today": {}, "none": {}}
    for name, url in searches.items():
        results["new"][name] = one("new", name, url)
        with transaction.atomic():
            timed(f"DROP INDEX {PAIRS_INDEX}")
            results["today"][name] = one("today", name, url)
            timed(f"DROP INDEX {SEARCH_INDEX}")
            results["none"][name] = one("none", name, url)
            transaction.set_rollback(True)
    analyze_with = timed("ANALYZE rollouts_rollout")
    with transaction.atomic():
        timed(f"DROP INDEX {PAIRS_INDEX}")
        analyze_without = timed("ANALYZE rollouts_rollout")
        timed(f"DROP INDEX {SEARCH_INDEX}")
        trigram_build = timed(trigram_ddl)
        pairs_build = timed(pairs_ddl)
        transaction.set_rollback(True)
    mb = 1024 * 1024
    print(f"\ntext search at target p95 <= {SEARCH_TARGET_MS} ms: none = no search index (before issue 20), today ="
          f" trigram index only, new = trigram + character-pair index")
    print(f"{'search':38} {'none med/p95':>15} {'today med/p95':>15} {'new med/p95':>15} {'today/new p95':>13} "
          f"{'new/target':>10} queries today/new")
    for name in searches:
        none, today, new = results["none"][name], results["today"][name], results["new"][name]
        print(f"{name:38} {none[0]:7.1f}/{none[1]:7.1f} {today[0]:7.1f}/{today[1]:7.1f} {new[0]:7.1f}/{new[1]:7.1f} "
              f"{today[1] / new[1]:12.1f}x {new[1] / SEARCH_TARGET_MS:10.2f} {today[2]}/{new[2]}")
        print(f"    plan today: {today[3]}\n    plan new:   {new[3]}")
        emit("rollout search", f"{name}: p95", new[1], SEARCH_TARGET_MS, higher_is_better=False, unit="ms")
    print(f"\ntable {table_size / mb:.0f} MB (with TOAST and all indexes {total_size / mb:.0f} MB);"
          f" build in one transaction, max_parallel_maintenance_workers {workers}, maintenance_work_mem {maintenance_mem}:")
    print(f"  {SEARCH_INDEX}: {trigram_size / mb:.0f} MB, CREATE INDEX {trigram_build:.1f} s")
    print(f"  {PAIRS_INDEX}: {pairs_size / mb:.0f} MB ({pairs_size / trigram_size:.2f}x),"
          f" CREATE INDEX {pairs_build:.1f} s ({pairs_build / trigram_build:.2f}x)")
    print(f"  ANALYZE rollouts_rollout: {analyze_with:.1f} s with the character-pair index,"
          f" {analyze_without:.1f} s without")


if __name__ == "__main__":
    main()
