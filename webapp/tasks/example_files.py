"""Reading example files (JSON Lines, CSV, Parquet) row by row, with errors that name the line and the column.

Pure parsing: no database, no Django models. `webapp.tasks.services` stages uploads and writes the examples.
Files are read as a stream (one line or one Parquet batch at a time), never slurped, so a 100 MB upload costs
memory for the rows it yields, not for its bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

from webapp.core import safejson
from webapp.core.errors import ApplicationError

PREVIEW_ROWS = 10
SNIFF_BYTES = 64 * 1024
CSV_FIELD_LIMIT = 32 * 1024 * 1024


class FileFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


class ColumnRole(StrEnum):
    ID = "id"
    PROMPT = "prompt"
    ANSWER = "answer"
    SPLIT = "split"
    MESSAGES = "messages"
    INFO = "info"
    IGNORE = "ignore"


ROLE_LABELS = {
    ColumnRole.ID: "Example id",
    ColumnRole.PROMPT: "Prompt",
    ColumnRole.ANSWER: "Reference answer",
    ColumnRole.SPLIT: "Split",
    ColumnRole.MESSAGES: "Chat messages (JSON list)",
    ColumnRole.INFO: "Keep in info",
    ColumnRole.IGNORE: "Ignore",
}
SINGLE_ROLES = (ColumnRole.ID, ColumnRole.PROMPT, ColumnRole.ANSWER, ColumnRole.SPLIT, ColumnRole.MESSAGES)

# Column names that map to a role without the user choosing (case-insensitive).
ROLE_GUESSES: dict[ColumnRole, tuple[str, ...]] = {
    ColumnRole.ID: ("id", "external_id", "example_id", "uid", "uuid", "qid", "task_id"),
    ColumnRole.PROMPT: ("prompt", "question", "input", "problem", "query", "instruction"),
    ColumnRole.ANSWER: ("answer", "reference", "reference_answer", "target", "solution", "output", "label"),
    ColumnRole.SPLIT: ("split",),
    ColumnRole.MESSAGES: ("messages", "conversation", "chat"),
}

SPLIT_ALIASES = {"train": "train", "training": "train", "eval": "eval", "evaluation": "eval", "test": "eval",
                 "validation": "eval", "valid": "eval", "val": "eval", "dev": "eval"}


@dataclass(frozen=True)
class Row:
    """One record of the file: `line` is the 1-based line (CSV, JSONL) or row (Parquet) it starts on."""

    line: int
    values: dict[str, Any]


@dataclass(frozen=True)
class Preview:
    columns: list[str]
    rows: list[Row]


def where(fmt: FileFormat) -> str:
    return "row" if fmt == FileFormat.PARQUET else "line"


# --- format and encoding ---------------------------------------------------------------------------------------


def detect_format(path: Path, filename: str) -> FileFormat:
    """Decide by content first (a Parquet file renamed .csv is still Parquet), then by the file name."""
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        raise ApplicationError("The file is empty.", field="file")
    if head.startswith(b"PAR1"):
        return FileFormat.PARQUET
    if filename.lower().endswith((".xlsx", ".xls", ".ods")) or head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ApplicationError("Spreadsheet files cannot be imported directly: save the sheet as “CSV UTF-8” and "
                               "upload that.", field="file")
    if head.startswith(b"\x1f\x8b") or head.startswith(b"PK\x03\x04") or head.startswith(b"BZh"):
        raise ApplicationError(
            "This is a compressed file (gzip, zip or bzip2). Uncompress it and upload the .jsonl, .csv or "
            ".parquet file inside.", field="file")
    _check_text_encoding(head)
    name = filename.lower()
    if name.endswith((".parquet", ".pq")):
        raise ApplicationError("This file is named .parquet but is not a Parquet file (it has no PAR1 header).",
                               field="file")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return FileFormat.JSONL
    if name.endswith((".csv", ".tsv", ".txt")):
        return FileFormat.CSV
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    return FileFormat.JSONL if text.startswith("{") else FileFormat.CSV


def _check_text_encoding(head: bytes) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ApplicationError(
            "This file is encoded as UTF-16. Save it as UTF-8 (in Excel: “CSV UTF-8”; in an editor: "
            "“Save with encoding → UTF-8”) and upload it again.", field="file")
    if b"\x00" in head:
        # UTF-16 without a byte-order mark puts a NUL next to every ASCII character.
        if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
            raise ApplicationError(
                "This file looks like UTF-16 text (every other byte is zero). Save it as UTF-8 and upload it "
                "again.", field="file")
        raise ApplicationError(
            "This is not a text file (it contains NUL bytes). Upload JSON Lines or CSV as UTF-8 text, or a "
            "Parquet file.", field="file")


def _decode_line(raw: bytes, line: int) -> str:
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[: exc.start].decode("utf-8", errors="replace")) + 1
        byte = raw[exc.start : exc.start + 1].hex().upper()
        hint = ""
        try:
            sample = raw.decode("cp1252").strip()
        except UnicodeDecodeError:
            hint = " The file may be binary or in an unusual encoding."
        else:
            hint = (f" It looks like Latin-1/Windows-1252 text (that line reads “{sample[:60]}” in it): save the "
                    "file as UTF-8 and upload it again.")
        raise ApplicationError(
            f"Line {line}, column {column}: byte 0x{byte} is not valid UTF-8.{hint}", field="file") from None


def _text_lines(handle: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number, decoded line with its line ending) for each physical line."""
    for number, raw in enumerate(handle, start=1):
        if b"\x00" in raw:
            raise ApplicationError(f"Line {number} contains a NUL byte: this is not a text file.", field="file")
        yield number, _decode_line(raw, number)


# --- JSON Lines --------------------------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and Postgres jsonb) do not.
    raise json.JSONDecodeError(f"{name} is not valid JSON; use null", name, 0)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with open(path, "rb") as handle:
        for number, text in _text_lines(handle):
            if not text.strip():
                continue
            try:
                value = safejson.loads(text, parse_constant=_no_constant)
            except json.JSONDecodeError as exc:
                if number == 1 and text.lstrip().startswith("["):
                    raise ApplicationError(
                        "Line 1: this is a JSON array, not JSON Lines. Put one JSON object per line "
                        "(e.g. `jq -c '.[]' file.json > file.jsonl`).", field="file") from None
                raise ApplicationError(
                    f"Line {number}, column {exc.colno}: not valid JSON ({exc.msg}).", field="file") from None
            if "\\u" in text and safejson.has_lone_surrogate(value):
                raise ApplicationError(
                    f"Line {number}: contains an invalid character (a lone surrogate such as \\ud800), which "
                    "cannot be stored.", field="file")
            if not isinstance(value, dict):
                raise ApplicationError(
                    f"Line {number}: expected a JSON object like {{\"id\": ..., \"prompt\": ...}}, "
                    f"got {_kind(value)}.", field="file")
            yield Row(number, value)


# --- CSV ---------------------------------------------------------------------------------------------------------


def _csv_dialect(path: Path, filename: str) -> type[csv.Dialect] | csv.Dialect:
    if filename.lower().endswith(".tsv"):
        return csv.excel_tab
    with open(path, "rb") as handle:
        sample = handle.read(SNIFF_BYTES).decode("utf-8", errors="ignore")
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _csv_rows(path: Path, filename: str) -> Iterator[Row]:
    # Prompts and reference answers can be long documents; the csv module's default cap is 128 KiB per field.
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    dialect = _csv_dialect(path, filename)
    with open(path, "rb") as handle:
        state = {"line": 0}

        def lines() -> Iterator[str]:
            for number, text in _text_lines(handle):
                state["line"] = number
                yield text

        reader = csv.reader(lines(), dialect)
        try:
            header = next(reader, None)
            if header is None:
                raise ApplicationError("The file is empty.", field="file")
            header = [name.strip() for name in header]
            if any(not name for name in header):
                position = next(i for i, name in enumerate(header, start=1) if not name)
                raise ApplicationError(f"Line 1: column {position} of the header has no name.", field="file")
            duplicates = sorted({name for name in header if header.count(name) > 1})
            if duplicates:
                raise ApplicationError(f"Line 1: the header names column {duplicates[0]!r} twice.", field="file")
            start = state["line"] + 1
            for record in reader:
                line, start = start, state["line"] + 1
                if not record or all(not cell.strip() for cell in record):
                    continue
                if len(record) != len(header):
                    raise ApplicationError(
                        f"Line {line}: {len(record)} values, but the header has {len(header)} columns "
                        f"({', '.join(header)}). Check the quoting and the delimiter.", field="file")
                yield Row(line, dict(zip(header, record, strict=True)))
        except csv.Error as exc:
            raise ApplicationError(f"Line {state['line']}: the CSV is malformed ({exc}).", field="file") from None


# --- Parquet -----------------------------------------------------------------------------------------------------


def _parquet_file(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - depends on the install
        raise ApplicationError("Parquet import needs pyarrow on the web server (pip install pyarrow).",
                               field="file") from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise ApplicationError(f"This Parquet file cannot be read: {exc}", field="file") from None


def _parquet_columns(path: Path) -> list[str]:
    return list(_parquet_file(path).schema_arrow.names)


def _parquet_rows(path: Path, *, batch_size: int = 1000) -> Iterator[Row]:
    parquet = _parquet_file(path)
    number = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_size):
            for values in batch.to_pylist():
                number += 1
                yield Row(number, {key: _plain(value) for key, value in values.items()})
    except ApplicationError:
        raise
    except Exception as exc:
        raise ApplicationError(f"Row {number + 1}: the Parquet file cannot be read ({exc}).", field="file") from None


def _plain(value: Any) -> Any:
    """Parquet values as JSON-compatible Python values (dates, decimals and bytes become text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # pandas writes missing values as NaN; JSON has no NaN
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


# --- public API --------------------------------------------------------------------------------------------------


def iter_rows(path: Path, fmt: FileFormat, filename: str) -> Iterator[Row]:
    if fmt == FileFormat.PARQUET:
        return _parquet_rows(path)
    if fmt == FileFormat.JSONL:
        return _jsonl_rows(path)
    return _csv_rows(path, filename)


def read_preview(path: Path, fmt: FileFormat, filename: str, *, rows: int = PREVIEW_ROWS) -> Preview:
    """The columns and the first rows. Columns of JSON Lines files are the union of the keys in those rows."""
    first: list[Row] = []
    for row in iter_rows(path, fmt, filename):
        first.append(row)
        if len(first) >= rows:
            break
    if fmt == FileFormat.PARQUET:
        columns = _parquet_columns(path)
    else:
        columns = []
        for row in first:
            columns.extend(key for key in row.values if key not in columns)
    if not first:
        raise ApplicationError("The file has no rows.", field="file")
    return Preview(columns=columns, rows=first)


def guess_roles(columns: list[str]) -> dict[str, ColumnRole]:
    roles: dict[str, ColumnRole] = {}
    taken: set[ColumnRole] = set()
    for column in columns:
        role = next(
            (r for r, names in ROLE_GUESSES.items() if column.strip().lower() in names and r not in taken),
            ColumnRole.INFO,
        )
        roles[column] = role
        if role in SINGLE_ROLES:
            taken.add(role)
    return roles


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(
        type(value), type(value).__name__)


def cell_text(value: Any, *, fmt: FileFormat, line: int, column: str, what: str) -> str:
    """A cell as text for the id/prompt/answer: numbers are fine, objects and lists are not."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    raise ApplicationError(
        f"{where(fmt).capitalize()} {line}, column {column!r}: the {what} must be text, got {_kind(value)}.",
        field="file")


def cell_split(value: Any, *, fmt: FileFormat, line: int, column: str) -> str:
    text = cell_text(value, fmt=fmt, line=line, column=column, what="split").strip().lower()
    if text not in SPLIT_ALIASES:
        raise ApplicationError(
            f"{where(fmt).capitalize()} {line}, column {column!r}: unknown split {text!r} "
            "(use train or eval; test/validation/dev count as eval).", field="file")
    return SPLIT_ALIASES[text]


def cell_messages(value: Any, *, fmt: FileFormat, line: int, column: str) -> list | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = safejson.loads(value)
        except json.JSONDecodeError as exc:
            raise ApplicationError(
                f"{where(fmt).capitalize()} {line}, column {column!r}: messages are not valid JSON ({exc.msg}).",
                field="file") from None
    if not isinstance(value, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in value
    ):
        raise ApplicationError(
            f"{where(fmt).capitalize()} {line}, column {column!r}: messages must be a list of "
            "{\"role\": ..., \"content\": ...} objects.", field="file")
    return value
