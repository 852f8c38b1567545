"""The label-write counters (`models.LabelWrites`) on SQLite, the embedded mode.

Postgres counts in statement-level triggers created by migration 0008. SQLite has no statement-level triggers, and
Django rebuilds a SQLite table to alter it, which drops the table's triggers: row-level triggers are (re)created here
after every migrate, idempotently.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from webapp.reviews.models import HumanLabel, LabelSource, LabelWrites, PairwiseJudgment, PairwiseLabel

COUNTED = [(HumanLabel, LabelSource.LABEL), (PairwiseLabel, LabelSource.PAIRWISE),
           (PairwiseJudgment, LabelSource.JUDGMENT)]

_UPSERT = ("INSERT INTO {counters} (rubric_version_id, source, writes) VALUES ({row}.rubric_version_id, '{source}', 1)"
           " ON CONFLICT (rubric_version_id, source) DO UPDATE SET writes = writes + 1;")


def sqlite_triggers_install(*, using: str = "default", **kwargs: Any) -> None:
    """post_migrate receiver: row-level counting triggers on each counted table (no-op on other databases)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    counters = LabelWrites._meta.db_table
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for model, source in COUNTED:
            table = model._meta.db_table
            if counters not in existing or table not in existing:  # migrated only part of the way
                continue
            for event, rows in (("insert", ["NEW"]), ("update", ["OLD", "NEW"]), ("delete", ["OLD"])):
                body = " ".join(_UPSERT.format(counters=counters, row=row, source=source.value) for row in rows)
                cursor.execute(f"CREATE TRIGGER IF NOT EXISTS {table}_label_writes_{event} AFTER {event.upper()}"
                               f" ON {table} FOR EACH ROW BEGIN {body} END")
