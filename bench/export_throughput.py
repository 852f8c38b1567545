"""Export throughput: rollouts with per-criterion scores and totals to JSONL and Parquet through the real export
path (`webapp.exports.services.export_write`), against `COPY (SELECT ...) TO STDOUT` of the same rows in the same run.

    DATABASE: rubricon_bench_export (created if missing, migrated; seeded by INSERT … SELECT generate_series;
              never the test database)
    .venv/bin/python bench/export_throughput.py [--rows 100000 1000000] [--repeat 3] [--streams 2]

Each measurement runs in a fresh process so its peak RSS (VmHWM) is its own. COPY, JSONL and Parquet run in turn,
`--repeat` rounds, so that each round's three measurements share the machine's load of that minute; the ratios are
those of the median seconds (and the spread of the per-round ratios is printed). `--streams` sets
RUBRICON_EXPORT_COPY_STREAMS for the exports (several values: each measured in the same rounds). Targets (issue 20):
export rows/s ≥ 0.8 × COPY, peak RSS ≤ 300 MB and about the same at 100k and 1M rows (memory flat).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._results import emit  # noqa: E402


def django_setup(database: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{database}"
    import django

    django.setup()


def ensure_database(database: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def insert_model_rows(model, values: dict[str, str], source: str, params: dict | None = None) -> int:
    """INSERT … SELECT into a model's table, the rows built by Postgres itself (minutes faster than streaming them
    from Python at millions of rows): `values` maps field attnames to SQL expressions over `source` (the rest of the
    statement after SELECT's list: FROM …, ORDER BY …); fields left out get the field's default, as a Django save
    would give them ("" for text fields, None for nullable ones, now for auto_now(_add))."""
    from django.db import connection
    from django.db.models import JSONField
    from django.utils import timezone

    now = timezone.now()
    params = dict(params or {})
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    exprs = []
    for f in fields:
        if f.attname in values:
            exprs.append(values[f.attname])
            continue
        default = now if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False) else f.get_default()
        if isinstance(f, JSONField) and default is not None:
            default = json.dumps(default)
        params[f"default_{f.attname}"] = default
        exprs.append(f"%(default_{f.attname})s::{f.db_type(connection)}")
    columns = ", ".join(f'"{f.column}"' for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(f'INSERT INTO "{model._meta.db_table}" ({columns}) SELECT {", ".join(exprs)} {source}', params)
        return cursor.rowcount


# ---------------------------------------------------------------------------------------------------------------
# The export benchmark.

SPEC = {"criteria": [
    {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag", "mode": "numeric",
     "tolerance": 0.0},
    {"key": "clear", "title": "Clear", "kind": "judge", "weight": 0.5, "question": "Is the answer clear?",
     "choices": [{"label": "no"}, {"label": "yes"}]},
]}
COMPLETION = ("Let me think step by step. First add the tens, then the units, and check the carry. " * 2
              + "<answer>{answer}</answer>")


def seed(rows: int, group: int = 8) -> dict:
    """A project with rows/group examples, `group` rollouts per example, 2 criterion scores and a total each."""
    from django.db import connection, transaction

    from webapp.core.models import Project
    from webapp.judging.models import CriterionScore, RolloutScore
    from webapp.rollouts.models import Rollout
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.tasks.models import Example, Task

    existing = Project.objects.filter(name=f"bench {rows}").order_by("-pk").first()
    if existing is not None and Rollout.objects.filter(project=existing).count() == rows:
        print(f"(reusing the {rows:,} rollouts seeded earlier)")
        return {"project": existing.pk, "version": RubricVersion.objects.get(rubric__project=existing).pk}
    with transaction.atomic():
        project = Project.objects.create(name=f"bench {rows}", slug=f"bench-{rows}-{os.getpid()}")
        task = Task.objects.create(project=project, name="arith")
        rubric = Rubric.objects.create(project=project, name="arith", task=task)
        version = RubricVersion.objects.create(rubric=rubric, number=1, spec=SPEC)
        # Built by Postgres (generate_series), row for row what a Python loop streaming them by COPY gave
        # (tests/test_bench_seeds.py): example i is "What is i + 7?" (answer i + 7); rollout n belongs to example
        # n // group, answers it right unless n % 3 == 0; criterion scores and totals follow the rollout's id.
        examples = max(rows // group, 1)
        with connection.cursor() as cursor:
            # Rows consistent by construction: skip the per-row foreign-key checks (triggers) for this transaction,
            # as pg_restore --disable-triggers does; at millions of rows they cost more than writing the rows.
            cursor.execute("SET LOCAL session_replication_role = replica")
        insert_model_rows(Example, {"task_id": "%(task)s", "external_id": "'ex-' || i",
                                    "prompt": "'What is ' || i || ' + 7?'", "answer": "(i + 7)::text"},
                          "FROM generate_series(0, %(last)s) AS i", {"task": task.pk, "last": examples - 1})
        head, tail = COMPLETION.split("{answer}")
        prompt = "jsonb_build_object('role', 'user', 'content', 'What is ' || x.i || ' + 7?')"
        insert_model_rows(Rollout, {
            "project_id": "%(project)s", "task_id": "%(task)s", "example_id": "e.ids[x.i + 1]",
            "source": "'generation'", "model_name": "'bundled'", "group_key": "'g' || n / %(group)s",
            "sample_index": "n %% %(group)s", "prompt_messages": f"jsonb_build_array({prompt})",
            "messages": f"jsonb_build_array({prompt}, jsonb_build_object('role', 'assistant', 'content', x.completion))",
            "completion": "x.completion", "prompt_tokens": "12", "completion_tokens": "48", "finish_reason": "'stop'",
            "latency_ms": "350", "metadata": "'{\"turns\": 1}'::jsonb",
        }, "FROM (SELECT array_agg(id ORDER BY substr(external_id, 4)::int) AS ids FROM tasks_example"
           " WHERE task_id = %(task)s) e, generate_series(0, %(last)s) AS n,"
           " LATERAL (SELECT (n / %(group)s) %% %(examples)s AS i,"
           " %(head)s || CASE WHEN n %% 3 = 0 THEN '0' ELSE ((n / %(group)s) %% %(examples)s + 7)::text END"
           " || %(tail)s AS completion) x",
           {"project": project.pk, "task": task.pk, "last": rows - 1, "group": group, "examples": examples,
            "head": head, "tail": tail})
        # Both criterion scores of a rollout next to each other, as the loop wrote them (the lateral VALUES is
        # joined to each rollout in turn, in id order).
        insert_model_rows(CriterionScore, {
            "rollout_id": "r.id", "rubric_version_id": "%(version)s", "criterion_key": "k.key",
            "judge_fingerprint": "k.judge", "raw_choice": "k.raw_choice", "rationale": "k.rationale",
            "score": "CASE k.key WHEN 'correct' THEN (r.id %% 3 <> 0)::int::float8 ELSE (r.id %% 5)::float8 / 4 END",
        }, "FROM (SELECT id FROM rollouts_rollout WHERE project_id = %(project)s ORDER BY id) r,"
           " LATERAL (VALUES (r.id, 'correct', 'programmatic', '', ''),"
           " (r.id, 'clear', 'judge-a', 'yes', 'The steps are laid out plainly.')) AS k(rollout_id, key, judge,"
           " raw_choice, rationale)",
           {"project": project.pk, "version": version.pk})
        insert_model_rows(RolloutScore, {"rollout_id": "r.id", "rubric_version_id": "%(version)s",
                                         "judge_fingerprint": "'judge-a'", "total": "(r.id %% 7)::float8 / 6"},
                          "FROM rollouts_rollout r WHERE r.project_id = %(project)s ORDER BY r.id",
                          {"project": project.pk, "version": version.pk})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"project": project.pk, "version": version.pk}


def copy_baseline(project: int, version: int) -> tuple[int, int]:
    """COPY (SELECT ...) TO STDOUT of the same rows: rollout, task, example, total, criterion scores as JSON."""
    from django.db import connection

    from webapp.judging.models import CriterionScore, RolloutScore
    from webapp.rollouts.models import Rollout
    from webapp.tasks.models import Example, Task

    sql = f"""
        COPY (SELECT r.id, t.name, e.external_id, e.split, e.prompt, e.answer, r.job_id, r.run_id, r.step, r.source,
                     r.model_name, r.group_key, r.sample_index, r.prompt_messages, r.messages, r.completion,
                     r.prompt_tokens, r.completion_tokens, r.finish_reason, r.latency_ms, r.error, r.metadata,
                     rs.total,
                     (SELECT json_agg(json_build_object('rubric_version', cs.rubric_version_id,
                                 'criterion_key', cs.criterion_key, 'judge', cs.judge_fingerprint, 'score', cs.score,
                                 'raw_choice', cs.raw_choice, 'rationale', cs.rationale) ORDER BY cs.criterion_key)
                        FROM {CriterionScore._meta.db_table} cs
                       WHERE cs.rollout_id = r.id AND cs.rubric_version_id = {int(version)})
                FROM {Rollout._meta.db_table} r
                JOIN {Task._meta.db_table} t ON t.id = r.task_id
                LEFT JOIN {Example._meta.db_table} e ON e.id = r.example_id
                LEFT JOIN {RolloutScore._meta.db_table} rs ON rs.rollout_id = r.id AND rs.rubric_version_id = {int(version)}
               WHERE r.project_id = {int(project)} ORDER BY r.id) TO STDOUT"""
    size = rows = 0
    with connection.cursor() as cursor:
        # As the export does: JIT compiling these expressions costs more than it saves (seconds per statement).
        cursor.execute("SET jit = off")
    with connection.cursor() as cursor, cursor.cursor.copy(sql) as copy:
        for block in copy:
            size += len(block)
            rows += bytes(block).count(b"\n")
    return rows, size


def child(args) -> None:
    """One measurement in a fresh process, so its peak RSS is its own."""
    django_setup(args.database)
    import time

    from webapp.core.models import Project
    from webapp.exports.services import export_create, export_write

    base_rss = peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    if args.child == "copy":
        rows, size = copy_baseline(args.project, args.version)
    else:
        project = Project.objects.get(pk=args.project)
        export = export_create(project=project, kind="rollouts", format=args.child,
                               filters={"rubric_version": args.version}, enqueue=False)
        export = export_write(export_id=export.pk)
        assert export.status == "succeeded", export.error
        rows, size = export.done, Path(export.file.path).stat().st_size
        Path(export.file.path).unlink()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"what": args.child, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
                      "client_cpu_s": cpu, "bytes": size, "rss_before_mb": base_rss, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    import argparse
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database", default="rubricon_bench_export")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of COPY, JSONL, Parquet in turn")
    parser.add_argument("--streams", type=int, nargs="+", default=None,
                        help="RUBRICON_EXPORT_COPY_STREAMS for the exports (default: the setting's)")
    parser.add_argument("--child", choices=["copy", "jsonl", "parquet"])
    parser.add_argument("--project", type=int)
    parser.add_argument("--version", type=int)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    ensure_database(args.database)
    django_setup(args.database)
    migrate()
    import time

    for rows in args.rows:
        started = time.perf_counter()
        ids = seed(rows)
        print(f"== {rows:,} rollouts (+{2 * rows:,} criterion scores, {rows:,} totals) ready (seeded by"
              f" INSERT … SELECT) in {time.perf_counter() - started:.1f} s", flush=True)
        runs: dict[str, list[dict]] = {}
        whats = [("copy", None)] + [(fmt, st) for st in (args.streams or [None]) for fmt in ("jsonl", "parquet")]
        for round in range(args.repeat):
            print(f"-- round {round + 1}/{args.repeat}, load average {os.getloadavg()[0]:.1f}", flush=True)
            for what, streams in whats:
                env = dict(os.environ)
                if streams is not None:
                    env["RUBRICON_EXPORT_COPY_STREAMS"] = str(streams)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", what, "--database", args.database, "--project",
                     str(ids["project"]), "--version", str(ids["version"])],
                    check=True, capture_output=True, text=True, env=env,
                ).stdout.strip().splitlines()[-1]
                r = json.loads(out)
                label = what if streams is None else f"{what}/{streams}"
                runs.setdefault(label, []).append(r)
                print(f"{label:10s} {r['rows']:>9,} rows  {r['seconds']:7.2f} s  {r['rows_per_s']:>9,.0f} rows/s  "
                      f"client CPU {r['client_cpu_s']:5.2f} s  {r['bytes'] / 2**20:8.1f} MiB  "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB (after start-up {r['rss_before_mb']:.0f} MB)", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        copy_s = statistics.median(r["seconds"] for r in runs["copy"])
        for label, results in runs.items():
            if label == "copy":
                continue
            fmt = label.split("/")[0]
            seconds = statistics.median(r["seconds"] for r in results)
            ratio = copy_s / seconds
            rounds = [c["seconds"] / r["seconds"] for c, r in zip(runs["copy"], results, strict=True)]
            rss = max(r["peak_rss_mb"] for r in results)
            print(f"{label} / COPY = {ratio:.2f} (median seconds {seconds:.2f} vs {copy_s:.2f}; rounds "
                  f"{', '.join(f'{x:.2f}' for x in rounds)}; target ≥ 0.8); peak RSS {rss:.0f} MB (target ≤ 300)")
            name = fmt if "/" not in label or len(args.streams or []) < 2 else f"{fmt} ({label.split('/')[1]} streams)"
            emit("export", f"{name} / COPY rows/s at {rows:,}", ratio, 0.8, higher_is_better=True, unit="×")
            emit("export", f"{name} seconds at {rows:,}", seconds, float("inf"), higher_is_better=False, unit="s")
            emit("export", f"{name} peak RSS at {rows:,}", rss, 300, higher_is_better=False, unit="MB")


if __name__ == "__main__":
    main()
