"""Trigram index for the rollout browser's text search (issue 20), on Postgres only.

The browser filters `completion__icontains=q`, which Django writes as `UPPER(completion::text) LIKE UPPER('%q%')`.
A GIN index with gin_trgm_ops over the same expression, UPPER(completion), serves exactly that LIKE: the query and
its results stay as they were, and for a rare or absent term the planner reads the few candidate rows from the index
instead of scanning from the newest rollout. (An index on the raw column would only serve ILIKE, whose lower()-based
matching differs from UPPER() for some characters, e.g. the Kelvin sign and the long s.)

The index lives in the database only, not in the model state: SQLite (the embedded mode) has no GIN, and Django
recreates every model-state index whenever it rebuilds a table there. It is built CONCURRENTLY so an upgrade does not
block rollout writes while it indexes existing rows (hence `atomic = False`). pg_trgm is a trusted extension: the
database owner may create it; a DBA can also create it beforehand, the migration then leaves it alone.
"""

from __future__ import annotations

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEX = "rollout_completion_trgm"


def create_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("rollouts", "Rollout")._meta.db_table)
    # A concurrent build that was interrupted leaves an invalid index behind under this name: start over.
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {table} USING gin (UPPER(completion) gin_trgm_ops)")
    # Statistics of the indexed expression let the planner tell a rare term from a common one right away.
    schema_editor.execute(f"ANALYZE {table}")


def drop_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("rollouts", "0001_initial"),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
