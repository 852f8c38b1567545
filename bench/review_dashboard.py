"""Agreement dashboard at scale: 1,000,000 judge scores and 100,000 human labels, seeded by INSERT … SELECT.

    .venv/bin/python bench/review_dashboard.py [--rollouts 125000] [--repeat 5]

    DATABASE: rubricon_bench_reviews (created if missing, migrated; never the test database)

Shape: a rubric with 4 judge criteria (3 choices each), every rollout scored by 2 judges (rollouts × 4 × 2 scores);
one annotator labels the first 16 % of rollouts on every criterion and a second annotator the first 4 % again
(the human–human ceiling), i.e. 100,000 labels at the default size. Times the dashboard page through Django's
test client: cold (cache cleared: SQL aggregation + agreement.py with 1,000 bootstrap resamples per judge ×
criterion + template) and warm (labels and judge jobs unchanged: the signature's indexed queries + template), the
warm view's SQL time and whether it read any label row; the bias diagnostics fragment cold and warm; and what bulk
label writes cost (delete, re-insert and update the second annotator's labels by one statement each: 20 % of the
labels), which the label-write counters' triggers add to. Target: ≤ 1 s. Each run empties this benchmark's own
database first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_throughput import django_setup, ensure_database, migrate  # noqa: E402

CRITERIA = ["helpful", "correct", "concise", "safe"]
JUDGES = ["judge-a", "judge-b"]
CHOICES = ["no", "partly", "yes"]


def seed(rollouts: int) -> tuple[int, int, Any, int]:
    """Fresh project with the whole data set; returns (project id, rubric version id, viewer, second annotator id)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    from webapp.core.models import Membership, Project, Role
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.tasks.models import Task

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE judging_criterionscore, reviews_humanlabel, rollouts_rollout CASCADE")
    stamp = int(time.time())
    project = Project.objects.create(name=f"bench reviews {stamp}", slug=f"bench-reviews-{stamp}")
    task = Task.objects.create(project=project, name="bench")
    spec = {"criteria": [
        {"key": key, "title": key.title(), "kind": "judge", "question": "Is it {{ completion }}?",
         "choices": [{"label": c} for c in CHOICES]} for key in CRITERIA]}
    version = RubricVersion.objects.create(rubric=Rubric.objects.create(project=project, name="bench"), number=1, spec=spec)
    users = get_user_model()
    viewer = users.objects.create_user(f"bench-viewer-{stamp}", password="pw")
    ann1 = users.objects.create_user(f"bench-ann1-{stamp}", password="pw")
    ann2 = users.objects.create_user(f"bench-ann2-{stamp}", password="pw")
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    now = timezone.now()
    labeled, again = int(rollouts * 0.16), int(rollouts * 0.04)
    # Built by Postgres (generate_series, random() under setseed): tens of millions of scores at 3M rollouts, minutes
    # faster than streaming them from Python. The shape is the one a Python loop drew: each (rollout, criterion) has
    # a true choice, uniform over the 3; each judge gives it with probability 0.7, else a uniform choice; a label
    # gives it with probability 0.85, else a uniform choice (tests/test_bench_seeds.py).
    params = {"project": project.pk, "task": task.pk, "version": version.pk, "stamp": f"b{stamp}-", "now": now,
              "last": rollouts - 1, "criteria": CRITERIA, "judges": JUDGES, "choices": CHOICES,
              "ann1": ann1.pk, "ann2": ann2.pk, "labeled": labeled, "again": again}
    with connection.cursor() as cursor:
        # Rows consistent by construction: skip the per-row foreign-key checks (triggers), as pg_restore
        # --disable-triggers does; at 24M scores they cost more than writing the rows.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM rollouts_rollout")
        params["first"] = first_id = cursor.fetchone()[0] + 1
        cursor.execute(
            "INSERT INTO rollouts_rollout (id, project_id, task_id, source, model_name, group_key, sample_index,"
            " prompt_messages, messages, completion, completion_tokens, finish_reason, error, metadata, created_at)"
            " SELECT %(first)s + i, %(project)s, %(task)s, 'generation', 'policy-1b', %(stamp)s || i / 8, i %% 8,"
            " '[]', '[]', repeat('answer ', 1 + i %% 50), 1 + i %% 50, 'stop', '', '{}', %(now)s"
            " FROM generate_series(0, %(last)s) AS i ORDER BY i", params)
        cursor.execute("SELECT setval(pg_get_serial_sequence('rollouts_rollout', 'id'), %s)", [first_id + rollouts])
        # The lateral joins make the left side the outer loop: rows are written, and random() drawn, in
        # (rollout, criterion, judge) order, as the loop wrote them, with no sort of tens of millions of rows.
        cursor.execute("SELECT setseed(0)")
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_truth AS SELECT i, k, floor(random() * 3)::int AS truth"
            " FROM generate_series(0, %(last)s) AS i, LATERAL generate_series(1 + 0 * i, 4) AS k", params)
        cursor.execute(
            "INSERT INTO judging_criterionscore (rollout_id, rubric_version_id, criterion_key, judge_fingerprint,"
            " raw_choice, score, rationale, raw_response, cached, error, created_at)"
            " SELECT %(first)s + t.i, %(version)s, (%(criteria)s::text[])[t.k], (%(judges)s::text[])[v.j],"
            " (%(choices)s::text[])[v.verdict + 1], v.verdict / 2.0::float8, '', '', false, '', %(now)s"
            " FROM bench_truth t, LATERAL (SELECT j, CASE WHEN random() < 0.7 THEN t.truth"
            " ELSE floor(random() * 3)::int END AS verdict FROM generate_series(1 + 0 * t.i, 2) AS j) v", params)
        cursor.execute(
            "INSERT INTO reviews_humanlabel (rollout_id, rubric_version_id, criterion_key, annotator_id, choice, value,"
            " comment, reward_hacking, row_version, created_at, updated_at)"
            " SELECT %(first)s + t.i, %(version)s, (%(criteria)s::text[])[t.k], a.annotator,"
            " (%(choices)s::text[])[l.label + 1], l.label / 2.0::float8, '', false, 1, %(now)s, %(now)s"
            " FROM (VALUES (1, %(ann1)s, %(labeled)s), (2, %(ann2)s, %(again)s)) AS a(ord, annotator, count)"
            " JOIN bench_truth t ON t.i < a.count,"
            " LATERAL (SELECT CASE WHEN random() < 0.85 THEN t.truth ELSE floor(random() * 3)::int END"
            " + 0 * a.ord AS label) l ORDER BY a.ord, t.i, t.k", params)
        cursor.execute("DROP TABLE bench_truth")
        cursor.execute("RESET session_replication_role")
        # VACUUM as autovacuum would have long since: the first read of freshly copied rows otherwise also writes
        # their hint bits, a one-off cost of new data rather than of the dashboard.
        cursor.execute("VACUUM ANALYZE judging_criterionscore")
        cursor.execute("VACUUM ANALYZE reviews_humanlabel")
        cursor.execute("VACUUM ANALYZE rollouts_rollout")
    return project.pk, version.pk, viewer, ann2.pk


def write_cost(annotator_id: int, repeat: int = 3) -> None:
    """Bulk label writes, one statement each, medians: what triggers on the label table add shows here."""
    from django.db import connection

    deletes, inserts, updates = [], [], []
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE bench_again AS SELECT * FROM reviews_humanlabel WHERE annotator_id = %s",
                       [annotator_id])
        rows = cursor.rowcount
        for _ in range(repeat):
            t = time.perf_counter()
            cursor.execute("UPDATE reviews_humanlabel SET row_version = row_version + 1 WHERE annotator_id = %s",
                           [annotator_id])
            updates.append(time.perf_counter() - t)
            t = time.perf_counter()
            cursor.execute("DELETE FROM reviews_humanlabel WHERE annotator_id = %s", [annotator_id])
            deletes.append(time.perf_counter() - t)
            t = time.perf_counter()
            cursor.execute("INSERT INTO reviews_humanlabel SELECT * FROM bench_again")
            inserts.append(time.perf_counter() - t)
        cursor.execute("DROP TABLE bench_again")
    print(f"bulk label writes of {rows:,} rows, one statement each, median of {repeat}:"
          f" UPDATE {statistics.median(updates):.3f} s, DELETE {statistics.median(deletes):.3f} s,"
          f" INSERT … SELECT {statistics.median(inserts):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=125_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", default="rubricon_bench_reviews")
    parser.add_argument("--no-bias", dest="bias", action="store_false",
                        help="skip timing the bias diagnostics fragment (bench/curves.py plots only the page)")
    parser.add_argument("--no-writes", dest="writes", action="store_false",
                        help="skip timing bulk label writes (delete, insert, update of 20 %% of the labels)")
    args = parser.parse_args()
    ensure_database(args.database)
    django_setup(args.database)
    migrate()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    started = time.perf_counter()
    project_id, version_id, viewer, ann2 = seed(args.rollouts)
    seeded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM judging_criterionscore WHERE rubric_version_id = %s", [version_id])
        scores = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM reviews_humanlabel WHERE rubric_version_id = %s", [version_id])
        labels = cursor.fetchone()[0]
    print(f"seeded {args.rollouts:,} rollouts, {scores:,} scores, {labels:,} labels by INSERT … SELECT in {seeded:.1f} s")

    from webapp.reviews import dashboard, selectors
    from webapp.rubrics.models import RubricVersion

    version = RubricVersion.objects.get(pk=version_id)
    client = Client()
    client.force_login(viewer)
    url = f"/p/{project_id}/review/agreement/?version={version_id}"
    from django.conf import settings
    from django.core.cache import cache

    print(f"cache: {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}")
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imported before the first request, as gunicorn's post_worker_init does
    cold, warm, sql, warm_sql = [], [], [], []
    for _ in range(args.repeat):
        # Only this page's entry: clearing a Redis cache would flush the Celery broker's database too.
        cache.delete(dashboard._cache_key(version, dashboard.DEFAULT_RESAMPLES))
        t = time.perf_counter()
        response = client.get(url)
        cold.append(time.perf_counter() - t)
        assert response.status_code == 200
        t = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        warm.append(time.perf_counter() - t)
        warm_sql.append(sum(float(q["time"]) for q in queries.captured_queries))
        t = time.perf_counter()
        selectors.label_score_cells(label_version_id=version_id, steps={key: len(CHOICES) - 1 for key in CRITERIA})
        sql.append(time.perf_counter() - t)
    cards = response.content.decode().count('class="card agreement-card"')
    t = time.perf_counter()
    dashboard.agreement_dashboard(version, n_resamples=0)
    no_bootstrap = time.perf_counter() - t
    print(f"dashboard page, {cards} judge × criterion cards, median / max over {args.repeat} (target ≤ 1 s):")
    label_reads = sum("reviews_humanlabel" in q["sql"] for q in queries.captured_queries)
    print(f"  warm (data unchanged, {len(queries)} queries, {label_reads} reading reviews_humanlabel):"
          f" {statistics.median(warm):.3f} / {max(warm):.3f} s, of which SQL {statistics.median(warm_sql):.3f} /"
          f" {max(warm_sql):.3f} s")
    print(f"  cold (recomputed): {statistics.median(cold):.3f} / {max(cold):.3f} s"
          f" (in order: {', '.join(f'{x:.2f}' for x in cold)});"
          f" of which the pairs aggregation query {statistics.median(sql):.3f} s;"
          f" all figures without bootstrap {no_bootstrap:.3f} s")
    if args.bias:
        bias = []
        for _ in range(2):
            t = time.perf_counter()
            client.get(f"/p/{project_id}/review/agreement/bias/?version={version_id}", HTTP_HX_REQUEST="true")
            bias.append(time.perf_counter() - t)
        print(f"bias diagnostics fragment (loaded after the page): first {bias[0]:.3f} s, again (data unchanged)"
              f" {bias[1]:.3f} s")
    if args.writes:
        write_cost(ann2)
    from _results import emit

    emit("review dashboard", f"recomputed, max of {args.repeat} ({args.rollouts:,} rollouts)", max(cold), 1.0,
         higher_is_better=False, unit="s")
    emit("review dashboard", "unchanged (cached), max", max(warm), 1.0, higher_is_better=False, unit="s")


if __name__ == "__main__":
    main()
