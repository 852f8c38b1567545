"""Export rows built by Postgres and streamed with `COPY (SELECT ...) TO STDOUT`: no Python object per row.

The rollouts export on Postgres writes each JSONL line in SQL, byte for byte the line the Python writer
(`writers.write_jsonl_stream`) makes from the same row: keys in the same order, scalars encoded as Python's
`json.dumps(ensure_ascii=False)` does (Postgres' `to_json(text)` escapes exactly the same characters), floats in
Python's `repr` form, JSON columns spliced as the database's JSON text, and the per-rollout lists of scores and labels
as compact JSON. The Parquet writer reads lines of the same rows in which every value is a scalar (JSON columns as
JSON strings) into Arrow record batches with `pyarrow.json`.

Floats: Postgres prints the shortest text that reads back to the same double (`extra_float_digits = 1`), as Python's
`repr` does, but differently shaped: `1` for `1.0`, an exponent from 1e15 on (Python: 1e16), and not always the
shortest digits for integral values from 1e16 on. The SQL below reshapes the first two; a value of 1e16 or more
(never a score or reward in practice) puts a marker byte (\\x01) in the line, and the writer then writes the export
through the Python path instead (`CopyUnavailable`), so the output is always the Python writer's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection

BOOL, FLOAT, INT, JSON, MESSAGES, STR = "bool", "float", "int", "json", "messages", "str"
MARKER = b"\x01"


class CopyUnavailable(Exception):
    """The rows hold a value the SQL cannot print as Python does; the caller writes them the Python way."""


def py_float_sql(expr: str) -> str:
    """SQL text of a float8 expression as Python's json.dumps writes the float (NULL -> null)."""
    return (
        f"(CASE WHEN ({expr}) IS NULL THEN 'null'"
        f" WHEN ({expr}) = 'NaN'::float8 THEN 'NaN'"
        f" WHEN ({expr}) = 'Infinity'::float8 THEN 'Infinity'"
        f" WHEN ({expr}) = '-Infinity'::float8 THEN '-Infinity'"
        f" WHEN abs({expr}) >= 1e16 THEN chr(1) || ({expr})::text"
        f" WHEN ({expr}) = trunc({expr}) THEN"
        f" (CASE WHEN ({expr})::text = '-0' THEN '-0' ELSE (({expr})::bigint)::text END) || '.0'"
        f" WHEN abs({expr}) >= 1e15 THEN"
        f" regexp_replace(({expr})::text, '^(-?[0-9])[.]([0-9]{{15}})([0-9]+)e[+]15$', '\\1\\2.\\3')"
        f" ELSE ({expr})::text END)"
    )


def value_sql(type: str, expr: str, *, nested: bool, nullable: bool = True) -> str:
    """One JSON value. `nested`: JSON columns as JSON (JSONL); otherwise as JSON strings of their text (the scalar
    lines read into Arrow, where JSON columns are strings)."""
    if not nullable and type in (INT, STR) or not nullable and type in (JSON, MESSAGES) and nested:
        return f"({expr})::text" if type in (INT, JSON, MESSAGES) else f"to_json(({expr})::text)::text"
    if type == INT:
        return f"COALESCE(({expr})::text, 'null')"
    if type == FLOAT:
        if nested:
            return py_float_sql(expr)
        # Arrow reads any exact decimal text; non-finite values have no JSON number, so they go the Python way.
        return (f"(CASE WHEN ({expr}) IS NULL THEN 'null' WHEN ({expr}) IN ('NaN'::float8, 'Infinity'::float8, "
                f"'-Infinity'::float8) THEN chr(1) ELSE ({expr})::text END)")
    if type == BOOL:
        return f"(CASE WHEN ({expr}) THEN 'true' WHEN NOT ({expr}) THEN 'false' ELSE 'null' END)"
    if type in (JSON, MESSAGES):
        if nested:
            return f"COALESCE(({expr})::text, 'null')"
        return f"COALESCE(to_json(({expr})::text)::text, 'null')"
    return f"COALESCE(to_json(({expr})::text)::text, 'null')"


def object_sql(fields: Sequence[tuple[str, str, str] | tuple[str, str, str, bool]], *, nested: bool) -> str:
    """A compact JSON object from (key, type, SQL expression[, nullable]), keys in the given order."""
    parts = []
    for i, field in enumerate(fields):
        key, type, expr = field[0], field[1], field[2]
        nullable = [bool(field[3])] if len(field) > 3 else []
        quoted_key = key.replace("\\", "\\\\").replace('"', '\\"')
        parts.append("'" + ("{" if i == 0 else ",") + f'"{quoted_key}":' + "'")
        parts.append(value_sql(type, expr, nested=nested, nullable=nullable[0] if nullable else True))
    # One concat() call: a chain of || copies the growing line once per piece (quadratic in the line's length).
    return "concat(" + ", ".join(parts) + ", '}')"


@dataclass(frozen=True)
class CopySource:
    """The SQL of an export's rows as JSON lines (`nested` for JSONL, scalar-only for Arrow), `size` rows of ids
    above `after` in id order; the first key of every line is the row's id."""

    build: Callable[[bool, int, int], tuple[str, list[Any]]]
    limit: int | None = None


def available() -> bool:
    return connection.vendor == "postgresql"


def copy_chunks(source: CopySource, *, nested: bool, rows: int) -> Iterator[bytes]:
    """The lines, `rows` at a time: one COPY per chunk (keyset on the id), each read whole before it is yielded,
    so the connection is free for progress updates and cancel checks between chunks. CSV format with a delimiter
    and quote that cannot occur in JSON text (control characters are always escaped there): each value comes
    through verbatim, one line per row."""
    last, left = 0, source.limit
    with connection.cursor() as cursor:
        # extra_float_digits = 1 is the server default; the float shapes above rely on it. JIT: the line
        # expressions are long, and compiling them took longer (seconds per statement) than running them.
        cursor.execute("SELECT set_config('extra_float_digits', '1', false), set_config('jit', 'off', false)")
    try:
        yield from _chunks(source, nested, rows, last, left)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET jit")


def _chunks(source: CopySource, nested: bool, rows: int, last: int, left: int | None) -> Iterator[bytes]:
    while left is None or left > 0:
        size = rows if left is None else min(rows, left)
        try:
            sql, params = source.build(nested, last, size)
        except EmptyResultSet:  # a selection Django knows is empty (`.none()`, `pk__in=[]`) compiles to no SQL
            return
        statement = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x03')"
        with connection.cursor() as cursor, cursor.cursor.copy(statement, params or None) as copy:
            data = b"".join(copy)
        n = data.count(b"\n")
        if n:
            yield data
        if n < size:
            return
        line = data[data.rindex(b"\n", 0, len(data) - 1) + 1:]
        last = int(line[line.index(b":") + 1:line.index(b",")])
        if left is not None:
            left -= n
