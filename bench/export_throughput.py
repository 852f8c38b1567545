"""Export throughput: rollouts with per-criterion scores and totals to JSONL and Parquet through the real export
path (`webapp.exports.services.export_write`), against `COPY (SELECT ...) TO STDOUT` of the same rows in the same run.

    DATABASE: rubricon_bench_export (created if missing, migrated; seeded with COPY; never the test database)
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
from collections.abc import Iterator
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


def copy_model_rows(model, rows: Iterator[dict]) -> int:
    """COPY dicts into a model's table; columns the dicts leave out get the field's default."""
    from django.db import connection
    from django.db.models import JSONField
    from django.utils import timezone

    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    defaults = {}
    for f in fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            defaults[f.attname] = now
        else:
            defaults[f.attname] = f.get_default()  # "" for text fields, None for nullable ones
    json_fields = {f.attname for f in fields if isinstance(f, JSONField)}
    columns = ", ".join(f'"{f.column}"' for f in fields)
    n = 0
    with connection.cursor() as cursor, cursor.cursor.copy(
        f'COPY "{model._meta.db_table}" ({columns}) FROM STDIN'
    ) as copy:
        for row in rows:
            values = []
            for f in fields:
                value = row.get(f.attname, defaults[f.attname])
                if f.attname in json_fields and value is not None and not isinstance(value, str):
                    value = json.dumps(value)
                values.append(value)
            copy.write_row(values)
            n += 1
    return n


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
    from django.db import transaction

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
        examples = Example.objects.bulk_create(
            [Example(task=task, external_id=f"ex-{i}", prompt=f"What is {i} + 7?", answer=str(i + 7))
             for i in range(max(rows // group, 1))], batch_size=5000,
        )

        def rollouts():
            for n in range(rows):
                example = examples[(n // group) % len(examples)]
                prompt = [{"role": "user", "content": example.prompt}]
                completion = COMPLETION.format(answer=example.answer if n % 3 else "0")
                yield {"project_id": project.pk, "task_id": task.pk, "example_id": example.pk, "source": "generation",
                       "model_name": "bundled", "group_key": f"g{n // group}", "sample_index": n % group,
                       "prompt_messages": json.dumps(prompt),
                       "messages": json.dumps([*prompt, {"role": "assistant", "content": completion}]),
                       "completion": completion, "prompt_tokens": 12, "completion_tokens": 48,
                       "finish_reason": "stop", "latency_ms": 350, "metadata": '{"turns": 1}'}

        copy_model_rows(Rollout, rollouts())
        first, last = (Rollout.objects.filter(project=project).order_by(o).values_list("pk", flat=True).first()
                       for o in ("pk", "-pk"))

        def scores():
            for rid in range(first, last + 1):
                ok = rid % 3 != 0
                yield {"rollout_id": rid, "rubric_version_id": version.pk, "criterion_key": "correct",
                       "judge_fingerprint": "programmatic", "score": 1.0 if ok else 0.0, "raw_choice": ""}
                yield {"rollout_id": rid, "rubric_version_id": version.pk, "criterion_key": "clear",
                       "judge_fingerprint": "judge-a", "score": (rid % 5) / 4, "raw_choice": "yes",
                       "rationale": "The steps are laid out plainly."}

        copy_model_rows(CriterionScore, scores())
        copy_model_rows(RolloutScore, ({"rollout_id": rid, "rubric_version_id": version.pk,
                                        "judge_fingerprint": "judge-a", "total": (rid % 7) / 6}
                                       for rid in range(first, last + 1)))
    from django.db import connection

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
        print(f"== {rows:,} rollouts (+{2 * rows:,} criterion scores, {rows:,} totals) ready (COPY seeding) in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
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
