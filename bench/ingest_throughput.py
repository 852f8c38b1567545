"""Ingest throughput: rollouts from a JSONL file (the format a rollouts export writes) through the real import path
(`webapp.exports.import_rollouts.rollouts_import_path`: parse, validate, resolve task and example, one COPY streamed
while Python reads, one transaction), against a raw `COPY ... FROM STDIN` of the same rows already in COPY text
format, in the same run. The upload size limit is raised for the benchmark (1M rows are ~790 MiB of JSONL).

    DATABASE: rubricon_bench_ingest (created if missing, migrated; never the test database)
    .venv/bin/python bench/ingest_throughput.py [--rows 100000 1000000]

Each measurement runs in a fresh process (peak RSS is its own); the table is emptied between them.
Target: import rows/s ≥ 0.5 × raw COPY.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_throughput import (  # noqa: E402
    COMPLETION,
    django_setup,
    ensure_database,
    insert_model_rows,
    migrate,
    peak_rss_mb,
)


def prepare(rows: int, workdir: Path, group: int = 8) -> dict:
    """A project and task with rows/group examples, and the same rollouts written twice: as JSONL for the import,
    and as COPY text (ids resolved) for the baseline.

    Both files are written by Postgres (`COPY (SELECT … generate_series) TO STDOUT`), byte for byte what a Python loop
    writing `json.dumps(record, ensure_ascii=False)` lines and COPY text gave (tests/test_bench_seeds.py), in a
    fraction of its time: example i is "What is i + 7?" (answer i + 7); rollout n belongs to example n // group and
    answers it right unless n % 3 == 0."""
    from django.db import connection
    from django.utils import timezone

    from webapp.core.models import Project
    from webapp.exports.import_rollouts import DB_COLUMNS
    from webapp.tasks.models import Example, Task

    project = Project.objects.create(name=f"ingest {rows}", slug=f"ingest-{rows}-{time.time_ns()}")
    task = Task.objects.create(project=project, name="arith")
    examples = max(rows // group, 1)
    insert_model_rows(Example, {"task_id": "%(task)s", "external_id": "'ex-' || i",
                                "prompt": "'What is ' || i || ' + 7?'", "answer": "(i + 7)::text"},
                      "FROM generate_series(0, %(last)s) AS i", {"task": task.pk, "last": examples - 1})
    head, tail = COMPLETION.split("{answer}")
    params = {"task": task.pk, "project": project.pk, "last": rows - 1, "group": group, "examples": examples,
              "head": head, "tail": tail, "now": timezone.now().isoformat()}
    # JSON put together in json.dumps' key order and separators; to_json escapes the strings as it does.
    source = (
        " FROM (SELECT array_agg(id ORDER BY substr(external_id, 4)::int) AS ids FROM tasks_example"
        " WHERE task_id = %(task)s) e, generate_series(0, %(last)s) AS n,"
        " LATERAL (SELECT (n / %(group)s) %% %(examples)s AS i) x,"
        " LATERAL (SELECT %(head)s || CASE WHEN n %% 3 = 0 THEN '0' ELSE (x.i + 7)::text END || %(tail)s AS completion,"
        " '[{\"role\": \"user\", \"content\": ' || to_json('What is ' || x.i || ' + 7?')::text || '}' AS prompt) t,"
        " LATERAL (SELECT t.prompt || ']' AS prompt_messages, t.prompt || ', {\"role\": \"assistant\", \"content\": '"
        " || to_json(t.completion)::text || '}]' AS messages) j"
    )
    line = (
        "'{\"task\": \"arith\", \"example_id\": ' || to_json('ex-' || x.i)::text || ', \"step\": null,"
        " \"model_name\": \"bundled\", \"group_key\": ' || to_json('g' || n / %(group)s)::text"
        " || ', \"sample_index\": ' || n %% %(group)s || ', \"prompt_messages\": ' || j.prompt_messages"
        " || ', \"messages\": ' || j.messages || ', \"completion\": ' || to_json(t.completion)::text"
        " || ', \"prompt_tokens\": 12, \"completion_tokens\": 48, \"finish_reason\": \"stop\", \"latency_ms\": 350,"
        " \"error\": \"\", \"metadata\": {\"turns\": 1}}'"
    )
    columns = {
        "project_id": "%(project)s", "task_id": "%(task)s", "example_id": "e.ids[x.i + 1]", "step": "NULL",
        "source": "'import'", "model_name": "'bundled'", "group_key": "'g' || n / %(group)s",
        "sample_index": "n %% %(group)s", "prompt_messages": "j.prompt_messages", "messages": "j.messages",
        "completion": "t.completion", "prompt_tokens": "12", "completion_tokens": "48", "finish_reason": "'stop'",
        "latency_ms": "350", "error": "''", "metadata": "'{\"turns\": 1}'", "created_at": "%(now)s::text",
        "import_record_id": "NULL",
    }
    jsonl, copy = workdir / f"rollouts-{rows}.jsonl", workdir / f"rollouts-{rows}.copy"
    for path, select in ((jsonl, line), (copy, ", ".join(columns[c] for c in DB_COLUMNS))):
        with connection.cursor() as cursor, open(path, "wb") as out, \
                cursor.cursor.copy(f"COPY (SELECT {select}{source}) TO STDOUT", params) as rows_out:
            for block in rows_out:
                out.write(block)
    return {"project": project.pk, "jsonl": str(jsonl), "copy": str(copy)}


def child(args) -> None:
    os.environ.setdefault("RUBRICON_MAX_IMPORT_MB", "4096")  # the import's size check still runs, on a larger limit
    django_setup(args.database)
    from django.db import connection, transaction

    from webapp.core.models import Project
    from webapp.exports.import_rollouts import DB_COLUMNS, rollouts_import_path
    from webapp.rollouts.models import Rollout

    project = Project.objects.get(pk=args.project)
    started, cpu_started = time.perf_counter(), time.process_time()
    if args.child == "copy":
        rows = 0
        statement = f"COPY {Rollout._meta.db_table} ({', '.join(DB_COLUMNS)}) FROM STDIN"
        with transaction.atomic(), connection.cursor() as cursor, open(args.file, "rb") as f, \
                cursor.cursor.copy(statement) as copy:
            while block := f.read(1 << 20):
                copy.write(block)
                rows += block.count(b"\n")
    elif args.child == "named":  # as an upload through the UI or API: every row names its ImportRecord (indexed)
        from webapp.core.models import ImportRecord

        record = ImportRecord.objects.create(project=project, kind="rollouts", scope=f"bench {time.time_ns()}",
                                             sha256="0" * 64)
        rows = rollouts_import_path(project=project, path=Path(args.file), format="jsonl", import_record_id=record.pk)
    else:
        rows = rollouts_import_path(project=project, path=Path(args.file), format="jsonl")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = peak_rss_mb()
    assert Rollout.objects.filter(project=project).count() == rows
    with connection.cursor() as cursor:  # the benchmark's own database: emptying the table is instant this way
        cursor.execute(f"TRUNCATE {Rollout._meta.db_table} CASCADE")
    print(json.dumps({"what": args.child, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
                      "client_cpu_s": cpu, "peak_rss_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database", default="rubricon_bench_ingest")
    parser.add_argument("--child", choices=["copy", "import", "named"])
    parser.add_argument("--project", type=int)
    parser.add_argument("--file")
    parser.add_argument("--no-named", dest="named", action="store_false",
                        help="skip the import that names its ImportRecord (bench/curves.py plots only the plain one)")
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    ensure_database(args.database)
    django_setup(args.database)
    migrate()
    with tempfile.TemporaryDirectory() as tmp:
        for rows in args.rows:
            started = time.perf_counter()
            prepared = prepare(rows, Path(tmp))
            size = Path(prepared["jsonl"]).stat().st_size
            print(f"\n== {rows:,} rollouts, JSONL {size / 2**20:.0f} MiB (prepared in {time.perf_counter() - started:.1f} s)",
                  flush=True)
            results = {}
            whats = [("copy", prepared["copy"]), ("import", prepared["jsonl"])]
            for what, file in whats + ([("named", prepared["jsonl"])] if args.named else []):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", what, "--database", args.database, "--project",
                     str(prepared["project"]), "--file", file],
                    check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
                results[what] = r = json.loads(out)
                print(f"{what:7s} {r['rows']:>9,} rows  {r['seconds']:7.1f} s  {r['rows_per_s']:>9,.0f} rows/s  "
                      f"client CPU {r['client_cpu_s']:5.1f} s  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            ratio = results["import"]["rows_per_s"] / results["copy"]["rows_per_s"]
            print(f"import / COPY = {ratio:.2f} (target ≥ 0.5)" + (
                f"; named import / import = {results['named']['rows_per_s'] / results['import']['rows_per_s']:.2f}"
                if args.named else ""))
            from _results import emit

            emit("ingest", f"import / COPY FROM rows/s at {rows:,}", ratio, 0.5, higher_is_better=True, unit="×")
            emit("ingest", f"import seconds at {rows:,}", results["import"]["seconds"], float("inf"),
                 higher_is_better=False, unit="s")


if __name__ == "__main__":
    main()
