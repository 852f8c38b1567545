"""What the label-write counters' triggers (`reviews.LabelWrites`, migration 0008) cost in bulk label writes.

    .venv/bin/python bench/label_write_triggers.py [--database rubricon_bench_reviews]

Runs on a database bench/review_dashboard.py seeded (its labels stay as they were): one statement each over the
second annotator's labels (20 % of them) — UPDATE, DELETE, and INSERT … SELECT of the deleted rows — under EXPLAIN
ANALYZE in a transaction that is rolled back, and reports the statement's time and the time Postgres spent in the
counters' trigger (medians of 3). Foreign-key checks are deferred to commit and so are not in these times.
"""

from __future__ import annotations

import argparse
import statistics

import psycopg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="rubricon_bench_reviews")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{args.database}") as conn:
        annotator = conn.execute(
            "SELECT annotator_id FROM reviews_humanlabel GROUP BY 1 ORDER BY count(*) LIMIT 1").fetchone()[0]
        conn.execute("CREATE TEMPORARY TABLE again AS SELECT * FROM reviews_humanlabel WHERE annotator_id = %s",
                     [annotator])
        rows = conn.execute("SELECT count(*) FROM again").fetchone()[0]
        conn.commit()
        mine = f"FROM reviews_humanlabel WHERE annotator_id = {int(annotator)}"
        statements = {
            "UPDATE": ([], f"UPDATE reviews_humanlabel SET row_version = row_version + 1 WHERE annotator_id = {annotator}"),
            "DELETE": ([], f"DELETE {mine}"),
            "INSERT … SELECT": ([f"DELETE {mine}"], "INSERT INTO reviews_humanlabel SELECT * FROM again"),
        }
        for name, (before, sql) in statements.items():
            total, counters = [], []
            for _ in range(args.repeat):
                for statement in before:
                    conn.execute(statement)
                plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0][0]
                conn.rollback()
                total.append(plan["Execution Time"] / 1000)
                counters.append(sum(t["Time"] for t in plan.get("Triggers", [])
                                    if t["Trigger Name"].startswith("label_writes")) / 1000)
            print(f"{name} of {rows:,} labels: {statistics.median(total):.3f} s, of which the counters' trigger"
                  f" {statistics.median(counters):.3f} s (median of {args.repeat}, rolled back)")


if __name__ == "__main__":
    main()
