"""Index of the characters and character pairs of each completion, for text searches too short for trigrams (issue 20).

The trigram index of migration 0002 serves `UPPER(completion) LIKE UPPER('%q%')` only when pg_trgm finds a trigram in
the term; a term whose words are all shorter than three characters ("zq", "42", "a b", "€") gives it none, and the
search read the whole table. This index holds, per rollout, the set of single characters and of pairs of consecutive
characters of UPPER(completion) (a text[] under GIN). A text contains a term only if it has each of the term's pairs
(or, for one character, that character), so `grams(UPPER(completion)) @> term_grams(UPPER(q))` finds a superset of
the matches; the selector (webapp.rollouts.selectors.rollout_filter) takes those ids when they are few and keeps the
LIKE, so results are the LIKE's. Both sides use Postgres' own UPPER().

An array rather than a second trigram index over a transformed text: ANALYZE keeps per-element statistics of arrays
up to 64 kB wide (a text's expression statistics stop at 1 kB, which most completions exceed), and the selector reads
them to tell a common pair ("TH") from a rare one. The keys compare with the "C" collation (bytes), whatever the
database's locale.

Postgres only and kept out of the model state, as 0002; built CONCURRENTLY (hence `atomic = False`).
"""

from __future__ import annotations

from django.db import migrations

INDEX = "rollout_completion_grams"

FUNCTIONS = (
    # Every character and every pair of consecutive characters, once each: the pairs at even offsets and at odd
    # offsets come from two regex passes (C speed; substr() per position would walk a long text quadratically).
    """
    CREATE OR REPLACE FUNCTION rollout_text_grams(t text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT ARRAY(SELECT string_to_table(t, NULL)
                     UNION SELECT (regexp_matches(t, '..', 'g'))[1]
                     UNION SELECT (regexp_matches(substr(t, 2), '..', 'g'))[1])
    $$
    """,
    # What a term needs of a text's grams: its pairs, or the character itself when it has one.
    """
    CREATE OR REPLACE FUNCTION rollout_term_grams(t text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT CASE WHEN length(t) < 2 THEN ARRAY[t]
                    ELSE ARRAY(SELECT DISTINCT substr(t, i, 2) FROM generate_series(1, length(t) - 1) AS i) END
    $$
    """,
)


def create_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("rollouts", "Rollout")._meta.db_table)
    for function in FUNCTIONS:
        schema_editor.execute(function)
    # An interrupted concurrent build leaves an invalid index under this name: start over.
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    schema_editor.execute(f'CREATE INDEX CONCURRENTLY {INDEX} ON {table} USING gin'
                          f' ((rollout_text_grams(UPPER(completion)) COLLATE "C"))')
    # The element statistics of the indexed expression are what tell the planner a rare pair from a common one.
    schema_editor.execute(f"ANALYZE {table}")


def drop_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
    schema_editor.execute("DROP FUNCTION IF EXISTS rollout_text_grams(text)")
    schema_editor.execute("DROP FUNCTION IF EXISTS rollout_term_grams(text)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("rollouts", "0005_rollout_import_record"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
