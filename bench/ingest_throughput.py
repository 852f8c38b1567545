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

from export_throughput import COMPLETION, django_setup, ensure_database, migrate, peak_rss_mb  # noqa: E402


def _copy_text(value) -> str:
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def prepare(rows: int, workdir: Path, group: int = 8) -> dict:
    """A project and task with rows/group examples, and the same rollouts written twice: as JSONL for the import,
    and as COPY text (ids resolved) for the baseline."""
    from django.utils import timezone

    from webapp.core.models import Project
    from webapp.exports.import_rollouts import DB_COLUMNS
    from webapp.tasks.models import Example, Task

    project = Project.objects.create(name=f"ingest {rows}", slug=f"ingest-{rows}-{time.time_ns()}")
    task = Task.objects.create(project=project, name="arith")
    examples = Example.objects.bulk_create(
        [Example(task=task, external_id=f"ex-{i}", prompt=f"What is {i} + 7?", answer=str(i + 7))
         for i in range(max(rows // group, 1))], batch_size=5000,
    )
    now = timezone.now().isoformat()
    jsonl, copy = workdir / f"rollouts-{rows}.jsonl", workdir / f"rollouts-{rows}.copy"
    with open(jsonl, "w", encoding="utf-8") as j, open(copy, "w", encoding="utf-8") as c:
        for n in range(rows):
            example = examples[(n // group) % len(examples)]
            prompt = [{"role": "user", "content": example.prompt}]
            completion = COMPLETION.format(answer=example.answer if n % 3 else "0")
            record = {
                "task": "arith", "example_id": example.external_id, "step": None, "model_name": "bundled",
                "group_key": f"g{n // group}", "sample_index": n % group, "prompt_messages": prompt,
                "messages": [*prompt, {"role": "assistant", "content": completion}], "completion": completion,
                "prompt_tokens": 12, "completion_tokens": 48, "finish_reason": "stop", "latency_ms": 350, "error": "",
                "metadata": {"turns": 1},
            }
            j.write(json.dumps(record, ensure_ascii=False) + "\n")
            db = {**record, "project_id": project.pk, "task_id": task.pk, "example_id": example.pk,
                  "source": "import", "created_at": now, "import_record_id": None, "prompt_messages": json.dumps(prompt),
                  "messages": json.dumps(record["messages"]), "metadata": json.dumps(record["metadata"])}
            c.write("\t".join(_copy_text(db[col]) for col in DB_COLUMNS) + "\n")
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
            for what, file in (("copy", prepared["copy"]), ("import", prepared["jsonl"]), ("named", prepared["jsonl"])):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", what, "--database", args.database, "--project",
                     str(prepared["project"]), "--file", file],
                    check=True, capture_output=True, text=True,
                ).stdout.strip().splitlines()[-1]
                results[what] = r = json.loads(out)
                print(f"{what:7s} {r['rows']:>9,} rows  {r['seconds']:7.1f} s  {r['rows_per_s']:>9,.0f} rows/s  "
                      f"client CPU {r['client_cpu_s']:5.1f} s  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
            ratio = results["import"]["rows_per_s"] / results["copy"]["rows_per_s"]
            print(f"import / COPY = {ratio:.2f} (target ≥ 0.5); named import / import = "
                  f"{results['named']['rows_per_s'] / results['import']['rows_per_s']:.2f}")
            from _results import emit

            emit("ingest", f"import / COPY FROM rows/s at {rows:,}", ratio, 0.5, higher_is_better=True, unit="×")
            emit("ingest", f"import seconds at {rows:,}", results["import"]["seconds"], float("inf"),
                 higher_is_better=False, unit="s")


if __name__ == "__main__":
    main()
