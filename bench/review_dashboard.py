"""Agreement dashboard at scale: 1,000,000 judge scores and 100,000 human labels, seeded by COPY.

    .venv/bin/python bench/review_dashboard.py [--rollouts 125000] [--repeat 5]

    DATABASE: rubricon_bench_reviews (created if missing, migrated; never the test database)

Shape: a rubric with 4 judge criteria (3 choices each), every rollout scored by 2 judges (rollouts × 4 × 2 scores);
one annotator labels the first 16 % of rollouts on every criterion and a second annotator the first 4 % again
(the human–human ceiling), i.e. 100,000 labels at the default size. Times the dashboard page through Django's
test client: cold (cache cleared: SQL aggregation + agreement.py with 1,000 bootstrap resamples per judge ×
criterion + template) and warm (labels and judge jobs unchanged: two indexed signature queries + template).
Target: ≤ 1 s. Each run empties this benchmark's own database first.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_throughput import django_setup, ensure_database, migrate  # noqa: E402

CRITERIA = ["helpful", "correct", "concise", "safe"]
JUDGES = ["judge-a", "judge-b"]
CHOICES = ["no", "partly", "yes"]


def seed(rollouts: int) -> tuple[int, int]:
    """Fresh project with the whole data set; returns (project id, rubric version id)."""
    import random

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
    now = timezone.now().isoformat()
    rng = random.Random(0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM rollouts_rollout")
        first_id = cursor.fetchone()[0] + 1
        raw = cursor.cursor
        with raw.copy(
            "COPY rollouts_rollout (id, project_id, task_id, source, model_name, group_key, sample_index, prompt_messages,"
            " messages, completion, completion_tokens, finish_reason, error, metadata, created_at) FROM STDIN"
        ) as copy:
            for i in range(rollouts):
                copy.write_row([first_id + i, project.pk, task.pk, "generation", "policy-1b", f"b{stamp}-{i // 8}", i % 8,
                                "[]", "[]", "answer " * (1 + i % 50), 1 + i % 50, "stop", "", "{}", now])
        cursor.execute("SELECT setval(pg_get_serial_sequence('rollouts_rollout', 'id'), %s)", [first_id + rollouts])
        truth: dict[tuple[int, str], int] = {}
        with raw.copy(
            "COPY judging_criterionscore (rollout_id, rubric_version_id, criterion_key, judge_fingerprint, raw_choice,"
            " score, rationale, raw_response, cached, error, created_at) FROM STDIN"
        ) as copy:
            for i in range(rollouts):
                for key in CRITERIA:
                    true = rng.randrange(3)
                    truth[(i, key)] = true
                    for judge in JUDGES:
                        verdict = true if rng.random() < 0.7 else rng.randrange(3)
                        copy.write_row([first_id + i, version.pk, key, judge, CHOICES[verdict], verdict / 2, "", "",
                                        False, "", now])
        labeled, again = int(rollouts * 0.16), int(rollouts * 0.04)
        with raw.copy(
            "COPY reviews_humanlabel (rollout_id, rubric_version_id, criterion_key, annotator_id, choice, value, comment,"
            " reward_hacking, row_version, created_at, updated_at) FROM STDIN"
        ) as copy:
            for annotator, count in ((ann1, labeled), (ann2, again)):
                for i in range(count):
                    for key in CRITERIA:
                        label = truth[(i, key)] if rng.random() < 0.85 else rng.randrange(3)
                        copy.write_row([first_id + i, version.pk, key, annotator.pk, CHOICES[label], label / 2, "",
                                        False, 1, now, now])
        # VACUUM as autovacuum would have long since: the first read of freshly copied rows otherwise also writes
        # their hint bits, a one-off cost of new data rather than of the dashboard.
        cursor.execute("VACUUM ANALYZE judging_criterionscore")
        cursor.execute("VACUUM ANALYZE reviews_humanlabel")
        cursor.execute("VACUUM ANALYZE rollouts_rollout")
    return project.pk, version.pk, viewer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=125_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database", default="rubricon_bench_reviews")
    args = parser.parse_args()
    ensure_database(args.database)
    django_setup(args.database)
    migrate()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    started = time.perf_counter()
    project_id, version_id, viewer = seed(args.rollouts)
    seeded = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM judging_criterionscore WHERE rubric_version_id = %s", [version_id])
        scores = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM reviews_humanlabel WHERE rubric_version_id = %s", [version_id])
        labels = cursor.fetchone()[0]
    print(f"seeded {args.rollouts:,} rollouts, {scores:,} scores, {labels:,} labels by COPY in {seeded:.1f} s")

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
    cold, warm, sql = [], [], []
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
        t = time.perf_counter()
        selectors.label_score_cells(label_version_id=version_id, steps={key: len(CHOICES) - 1 for key in CRITERIA})
        sql.append(time.perf_counter() - t)
    cards = response.content.decode().count('class="card agreement-card"')
    t = time.perf_counter()
    dashboard.agreement_dashboard(version, n_resamples=0)
    no_bootstrap = time.perf_counter() - t
    print(f"dashboard page, {cards} judge × criterion cards, median / max over {args.repeat} (target ≤ 1 s):")
    print(f"  warm (data unchanged, {len(queries)} queries): {statistics.median(warm):.3f} / {max(warm):.3f} s")
    print(f"  cold (recomputed): {statistics.median(cold):.3f} / {max(cold):.3f} s"
          f" (in order: {', '.join(f'{x:.2f}' for x in cold)});"
          f" of which the pairs aggregation query {statistics.median(sql):.3f} s;"
          f" all figures without bootstrap {no_bootstrap:.3f} s")
    t = time.perf_counter()
    client.get(f"/p/{project_id}/review/agreement/bias/?version={version_id}", HTTP_HX_REQUEST="true")
    print(f"bias diagnostics fragment (loaded after the page): {time.perf_counter() - t:.3f} s")
    from _results import emit

    emit("review dashboard", f"recomputed, max of {args.repeat} ({args.rollouts:,} rollouts)", max(cold), 1.0,
         higher_is_better=False, unit="s")
    emit("review dashboard", "unchanged (cached), max", max(warm), 1.0, higher_is_better=False, unit="s")


if __name__ == "__main__":
    main()
