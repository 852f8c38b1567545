"""What the two text-search indexes cost on text shaped like real completions (issue 20): size, build time, the
time to store rows (INSERT … SELECT) with no search index, the trigram index only, and both, and ANALYZE.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/rubricon_bench_search .venv/bin/python bench/search_index_cost.py \
        [--rows 50000] [--chars 2000]

The browser benchmark's rows are one short sentence repeated; here each row is a different piece of English prose and
code (the documentation and sources of the installed Python packages, cut into pieces of about --chars characters,
reused in order when there are not enough). Uses its own table in a migrated database, with the functions of the
opt-in character-pair index (webapp.rollouts.search_index, created here, and dropped at the end unless that database
has the index enabled); the table is dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.test")

TABLE = "bench_search_index_cost"
TRIGRAM = "UPPER(completion) gin_trgm_ops"
PAIRS = '(rollout_text_grams(UPPER(completion)) COLLATE "C")'  # as webapp.rollouts.search_index builds it


def texts(rows: int, chars: int) -> list[str]:
    pieces: list[str] = []
    root = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(root.rglob("*")):
        if path.suffix not in (".md", ".rst", ".txt", ".py") or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace").replace("\x00", "")
        pieces.extend(text[i:i + chars] for i in range(0, len(text) - chars // 2, chars))
        if len(pieces) >= rows:
            break
    return [pieces[i % len(pieces)] for i in range(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--chars", type=int, default=2_000)
    args = parser.parse_args()
    import django

    django.setup()
    from webapp.rollouts.search_index import (
        SHORT_TERMS_FUNCTION_NAMES,
        SHORT_TERMS_FUNCTIONS,
        SHORT_TERMS_INDEX,
    )

    rows = texts(args.rows, args.chars)
    with psycopg.connect(os.environ["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True) as conn:
        def timed(sql: str) -> float:
            started = time.perf_counter()
            conn.execute(sql)
            return time.perf_counter() - started

        conn.execute(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_in")
        for function in SHORT_TERMS_FUNCTIONS:
            conn.execute(function)
        conn.execute(f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, completion text NOT NULL)")
        with conn.cursor() as cursor, cursor.copy(f"COPY {TABLE} (completion) FROM STDIN") as copy:
            for text in rows:
                copy.write_row([text])
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        size = conn.execute(f"SELECT pg_relation_size('{TABLE}'), pg_total_relation_size('{TABLE}'),"
                            f" avg(length(completion)) FROM {TABLE}").fetchone()
        builds = {name: timed(f"CREATE INDEX {TABLE}_{name} ON {TABLE} USING gin ({expr})")
                  for name, expr in (("trgm", TRIGRAM), ("pairs", PAIRS))}
        sizes = {name: conn.execute(f"SELECT pg_relation_size('{TABLE}_{name}')").fetchone()[0] for name in builds}
        analyze = {"both": timed(f"ANALYZE {TABLE}")}
        conn.execute(f"DROP INDEX {TABLE}_pairs")
        analyze["trgm"] = timed(f"ANALYZE {TABLE}")
        # Storing rows: the same rows again into an empty table with the indexes of each configuration.
        inserts = {}
        for name, indexes in (("none", ()), ("trgm", (TRIGRAM,)), ("both", (TRIGRAM, PAIRS))):
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}_in")
            conn.execute(f"CREATE TABLE {TABLE}_in (id bigserial PRIMARY KEY, completion text NOT NULL)")
            for i, expr in enumerate(indexes):
                conn.execute(f"CREATE INDEX {TABLE}_in_{i} ON {TABLE}_in USING gin ({expr})")
            inserts[name] = timed(f"INSERT INTO {TABLE}_in (completion) SELECT completion FROM {TABLE}")
        conn.execute(f"DROP TABLE {TABLE}, {TABLE}_in")
        if conn.execute("SELECT to_regclass(%s) IS NULL", [SHORT_TERMS_INDEX]).fetchone()[0]:
            conn.execute(f"DROP FUNCTION {', '.join(SHORT_TERMS_FUNCTION_NAMES)}")
    mb = 1024 * 1024
    print(f"{args.rows:,} rows of {size[2]:.0f} characters on average: table {size[0] / mb:.0f} MB"
          f" ({size[1] / mb:.0f} MB with TOAST and primary key)")
    for name in builds:
        print(f"  {name:5} index {sizes[name] / mb:6.1f} MB ({sizes[name] / sizes['trgm']:.2f}x trgm),"
              f" CREATE INDEX {builds[name]:5.1f} s ({builds[name] / builds['trgm']:.2f}x trgm)")
    print(f"  ANALYZE: {analyze['both']:.1f} s with both indexes, {analyze['trgm']:.1f} s with the trigram index only")
    for name, seconds in inserts.items():
        print(f"  INSERT … SELECT of all rows, search indexes {name:4}: {seconds:5.1f} s,"
              f" {args.rows / seconds:8,.0f} rows/s ({inserts['none'] / seconds:.2f}x of no index)")


if __name__ == "__main__":
    sys.exit(main())
