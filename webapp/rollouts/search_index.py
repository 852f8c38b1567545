"""The character-pair index for text searches too short for trigrams (issue 20): an operator's opt-in, off by default.

The trigram index of migration rollouts.0002_rollout_text_trgm serves `UPPER(completion) LIKE UPPER('%q%')` only when
pg_trgm finds a trigram in the term; a term whose words are all shorter than three characters ("zq", "42", "a b",
"€") gives it none, and the search reads the whole table. This index holds, per rollout, the set of single characters
and of pairs of consecutive characters of UPPER(completion) (a text[] under GIN). A text contains a term only if it
has each of the term's pairs (or, for one character, that character), so `grams(UPPER(completion)) @>
term_grams(UPPER(q))` finds a superset of the matches; the selector (webapp.rollouts.selectors.rollout_filter) takes
those ids when they are few and keeps the LIKE, so results are the LIKE's. Both sides use Postgres' own UPPER().

An array rather than a second trigram index over a transformed text: ANALYZE keeps per-element statistics of arrays
up to 64 kB wide (a text's expression statistics stop at 1 kB, which most completions exceed), and the selector reads
them to tell a common pair ("TH") from a rare one. The keys compare with the "C" collation (bytes), whatever the
database's locale.

Not a migration: the pairs are listed by a SQL function for every stored or changed completion, every build and every
ANALYZE sample, which makes storing rollouts 3–4× slower and ANALYZE of long completions ~30× slower
(docs/benchmarks.md). An installation that needs fast rare short-term searches turns it on with
`manage.py search_index short-terms --enable`; without it the selector sends today's query. Postgres only.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from webapp.core.errors import ApplicationError
from webapp.rollouts.models import Rollout

SHORT_TERMS_INDEX = "rollout_completion_grams"
# The trade-off, as measured (docs/benchmarks.md, issue 20 item 3), for `--status` and the command's help.
SHORT_TERMS_TRADE_OFF = (
    "reads: an absent two-letter term at 1M rollouts p95 685 -> 69 ms; writes: import 9,291 -> 2,927 rows/s, "
    "raw COPY 4.1x slower, ANALYZE of 2k-character texts 2.7 -> 91 s, CREATE INDEX 4-14x the trigram index's"
)

SHORT_TERMS_FUNCTIONS = (
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
SHORT_TERMS_FUNCTION_NAMES = ("rollout_text_grams(text)", "rollout_term_grams(text)")


@dataclass(frozen=True)
class ShortTermsIndexStatus:
    available: bool  # Postgres; SQLite (the embedded mode) has no GIN and searches without it
    exists: bool
    valid: bool  # a concurrent build that failed or was interrupted leaves an invalid index, which search skips
    size_bytes: int

    def describe(self) -> str:
        if not self.available:
            return (f"short-term search index: not available on {connection.vendor} (Postgres only); search works "
                    f"without it")
        if not self.exists:
            state = "disabled (the default)"
        elif not self.valid:
            state = "INVALID (a failed or interrupted build; search skips it: run --enable again, or --disable)"
        else:
            state = f"enabled, {_size(self.size_bytes)}"
        return f"short-term search index {SHORT_TERMS_INDEX}: {state}. Trade-off: {SHORT_TERMS_TRADE_OFF}."


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1024 / 1024:.1f} MB" if size_bytes >= 1024 * 1024 else f"{size_bytes / 1024:.0f} kB"


def short_terms_index_status() -> ShortTermsIndexStatus:
    if connection.vendor != "postgresql":
        return ShortTermsIndexStatus(available=False, exists=False, valid=False, size_bytes=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid, pg_relation_size(indexrelid) FROM pg_index"
                       " WHERE indexrelid = to_regclass(%s)", [SHORT_TERMS_INDEX])
        row = cursor.fetchone()
    if row is None:
        return ShortTermsIndexStatus(available=True, exists=False, valid=False, size_bytes=0)
    return ShortTermsIndexStatus(available=True, exists=True, valid=row[0], size_bytes=row[1])


def _outside_a_transaction(action: str) -> None:
    if connection.vendor != "postgresql":
        raise ApplicationError(f"The short-term search index is Postgres only (this database is {connection.vendor});"
                               f" search works without it, there is nothing to {action}.")
    if connection.in_atomic_block:
        raise ApplicationError(f"Cannot {action} the short-term search index inside a transaction: it is built and"
                               f" dropped CONCURRENTLY, so that rollouts can be stored meanwhile.")


def short_terms_index_enable() -> ShortTermsIndexStatus:
    """Creates the functions and builds the index CONCURRENTLY (rollouts can be stored and read meanwhile; at 1M
    rollouts it takes minutes), then ANALYZEs the table: the selector decides from the index's element statistics.
    An invalid leftover of an earlier build is dropped first; a valid index is kept as it is."""
    _outside_a_transaction("enable")
    table = connection.ops.quote_name(Rollout._meta.db_table)
    status = short_terms_index_status()
    if status.valid:
        return status
    with connection.cursor() as cursor:
        for function in SHORT_TERMS_FUNCTIONS:
            cursor.execute(function)
        if status.exists:
            cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SHORT_TERMS_INDEX}")
        cursor.execute(f'CREATE INDEX CONCURRENTLY {SHORT_TERMS_INDEX} ON {table} USING gin'
                       f' ((rollout_text_grams(UPPER(completion)) COLLATE "C"))')
        cursor.execute(f"ANALYZE {table}")
    return short_terms_index_status()


def short_terms_index_disable() -> ShortTermsIndexStatus:
    """Drops the index CONCURRENTLY, then its functions: searches go back to the trigram index and the table scan,
    and storing rollouts to its cost without the index."""
    _outside_a_transaction("disable")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {SHORT_TERMS_INDEX}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {', '.join(SHORT_TERMS_FUNCTION_NAMES)}")
    return short_terms_index_status()
