"""Export rows built by Postgres and streamed with `COPY (SELECT ...) TO STDOUT`: no Python object per row.

The rollouts export on Postgres writes each JSONL line in SQL, byte for byte the line the Python writer
(`writers.write_jsonl_stream`) makes from the same row: keys in the same order, scalars encoded as Python's
`json.dumps(ensure_ascii=False)` does (Postgres' `to_json(text)` escapes exactly the same characters), floats in
Python's `repr` form, JSON columns spliced as the database's JSON text, and the per-rollout lists of scores and labels
as compact JSON. The Parquet writer reads the same rows' columns as CSV (raw values; JSON columns, scores and labels as
JSON text) into Arrow tables with `pyarrow.csv`.

Floats: Postgres prints the shortest text that reads back to the same double (`extra_float_digits = 1`), as Python's
`repr` does, but differently shaped: `1` for `1.0`, an exponent from 1e15 on (Python: 1e16), and not always the
shortest digits for integral values from 1e16 on. The SQL below reshapes the first two; a value of 1e16 or more
(never a score or reward in practice) puts a marker byte (\\x01) in the line (in the scores' JSON text for Parquet),
and the writer then writes the export through the Python path instead (`CopyUnavailable`), so the output is always
the Python writer's. Parquet reads the reward itself as a number: every float, NaN and infinities included, reads
back exactly.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from django.conf import settings
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


def value_sql(type: str, expr: str, *, nullable: bool = True) -> str:
    """One JSON value, as the JSONL writer writes it (JSON columns spliced as their JSON text)."""
    if not nullable and type in (INT, STR, JSON, MESSAGES):
        return f"({expr})::text" if type in (INT, JSON, MESSAGES) else f"to_json(({expr})::text)::text"
    if type == INT:
        return f"COALESCE(({expr})::text, 'null')"
    if type == FLOAT:
        return py_float_sql(expr)
    if type == BOOL:
        return f"(CASE WHEN ({expr}) THEN 'true' WHEN NOT ({expr}) THEN 'false' ELSE 'null' END)"
    if type in (JSON, MESSAGES):
        return f"COALESCE(({expr})::text, 'null')"
    return f"COALESCE(to_json(({expr})::text)::text, 'null')"


def object_sql(fields: Sequence[tuple[str, str, str] | tuple[str, str, str, bool]]) -> str:
    """A compact JSON object from (key, type, SQL expression[, nullable]), keys in the given order."""
    parts = []
    for i, field in enumerate(fields):
        key, type, expr = field[0], field[1], field[2]
        nullable = bool(field[3]) if len(field) > 3 else True
        quoted_key = key.replace("\\", "\\\\").replace('"', '\\"')
        parts.append("'" + ("{" if i == 0 else ",") + f'"{quoted_key}":' + "'")
        parts.append(value_sql(type, expr, nullable=nullable))
    # One concat() call: a chain of || copies the growing line once per piece (quadratic in the line's length).
    return "concat(" + ", ".join(parts) + ", '}')"


# The two shapes of an export's rows: JSONL lines built by Postgres (one value per row, the finished line), or the
# export's columns as CSV for Arrow (raw values; JSON columns as their JSON text).
LINES, COLUMNS = "lines", "columns"
_FORMATS = {
    # A delimiter and quote that cannot occur in JSON text (control characters are always escaped there): each line
    # comes through verbatim.
    LINES: "WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x03')",
    # Plain CSV: NULL is an unquoted empty field, an empty string a quoted one (Arrow reads them apart).
    COLUMNS: "WITH (FORMAT csv)",
}


@dataclass(frozen=True)
class CopySource:
    """An export's rows as SQL for COPY. `build(shape, after, size, upto)`: the SQL of the first `size` rows with
    ids above `after` (and at most `upto`, unless None), in id order, the row's id first (the first key of a line,
    the first column of a CSV row). `boundary(after, size)`: the id of the `size`-th row above `after`, or None
    when there are fewer rows (lets several COPY streams run chunks ahead of the one being written)."""

    build: Callable[[str, int, int, int | None], tuple[str, list[Any]]]
    boundary: Callable[[int, int], int | None]
    limit: int | None = None


@dataclass(frozen=True)
class Chunk:
    data: bytes  # the COPY output of the chunk's rows
    rows: int


def available() -> bool:
    return connection.vendor == "postgresql"


def streams() -> int:
    """COPY statements run at once on connections of their own (0: one at a time on the caller's connection).
    Inside a transaction (tests; a caller's atomic block) the chunks always run on the caller's connection, which
    is the only one that sees its rows."""
    if connection.in_atomic_block:
        return 0
    return max(0, int(getattr(settings, "RUBRICON_EXPORT_COPY_STREAMS", 2)))


def copy_chunks(source: CopySource, *, shape: str, rows: int) -> Iterator[Chunk]:
    """The rows, `rows` at a time and in id order: one COPY per chunk, each read whole before it is yielded, so
    the caller's connection is free for progress updates and cancel checks between chunks.

    With streams() > 0 the chunks are copied by that many threads, each on its own connection, up to
    streams() + 1 chunks ahead of the one the caller is writing: Postgres builds the next rows while the caller
    writes these, on as many backends as there are streams. Chunk boundaries come from `source.boundary` (an
    index scan of the ids), so the chunks are the same rows in the same order as one at a time."""
    try:
        source.build(shape, 0, rows, None)
    except EmptyResultSet:  # a selection Django knows is empty (`.none()`, `pk__in=[]`) compiles to no SQL
        return
    count = streams()
    if count == 0:
        with connection.cursor() as cursor:
            _session(cursor)
        try:
            yield from _inline(source, shape, rows)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET jit")
        return
    yield from _streamed(source, shape, rows, count)


def _session(cursor: Any) -> None:
    # extra_float_digits = 1 is the server default; the float shapes above rely on it. JIT: the line expressions
    # are long, and compiling them took longer (seconds per statement) than running them.
    cursor.execute("SELECT set_config('extra_float_digits', '1', false), set_config('jit', 'off', false)")


def _copy(source: CopySource, shape: str, after: int, size: int, upto: int | None = None) -> tuple[Chunk, bytes]:
    """One chunk by COPY on this thread's connection, with its last row. COPY TO sends one message per row, so
    the rows are counted by message (a CSV value may hold a newline)."""
    sql, params = source.build(shape, after, size, upto)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({sql}) TO STDOUT {_FORMATS[shape]}",
                                                          params or None) as copy:
        blocks = list(copy)  # each block owns its buffer
    return Chunk(b"".join(blocks), len(blocks)), bytes(blocks[-1]) if blocks else b""


def _row_id(row: bytes, shape: str) -> int:
    if shape == LINES:  # {"<first key>":<id>,...
        return int(row[row.index(b":") + 1:row.index(b",")])
    return int(row[:row.index(b",")])


def _inline(source: CopySource, shape: str, rows: int) -> Iterator[Chunk]:
    last, left = 0, source.limit
    while left is None or left > 0:
        size = rows if left is None else min(rows, left)
        chunk, row = _copy(source, shape, last, size)
        if chunk.rows:
            yield chunk
        if chunk.rows < size:
            return
        last = _row_id(row, shape)
        if left is not None:
            left -= chunk.rows


def _streamed(source: CopySource, shape: str, rows: int, count: int) -> Iterator[Chunk]:
    jobs: queue.SimpleQueue[tuple[Future, int, int, int | None] | None] = queue.SimpleQueue()

    def work() -> None:
        ready = False
        try:
            while (job := jobs.get()) is not None:
                future, after, size, upto = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:  # any error (the connection's too) goes to the caller, who raises it
                    if not ready:
                        with connection.cursor() as cursor:
                            _session(cursor)
                        ready = True
                    future.set_result(_copy(source, shape, after, size, upto)[0])
                except BaseException as error:  # noqa: BLE001
                    future.set_exception(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, name=f"export-copy-{i}", daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    pending: deque[Future] = deque()
    after, left, more = 0, source.limit, True
    try:
        while True:
            while more and len(pending) <= count:
                size = rows if left is None else min(rows, left)
                if size <= 0:
                    more = False
                    break
                # The chunk's last id first, so that the chunk is exactly the rows up to it even if rows come or
                # go meanwhile (each chunk is its own statement, as one at a time).
                last = source.boundary(after, size)
                future: Future = Future()
                jobs.put((future, after, size, last))
                pending.append(future)
                if left is not None:
                    left -= size
                if last is None:
                    more = False  # this chunk holds the last rows
                else:
                    after = last
            if not pending:
                return
            chunk = pending.popleft().result()
            if chunk.rows:
                yield chunk
    finally:
        for future in pending:
            future.cancel()
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()
