"""Import rollouts from the files a rollouts export writes (JSONL, CSV, Parquet, Hugging Face zip): export → import
gives the same rollouts back. The whole file goes in one transaction, and an error names its line (row, for Parquet
and Hugging Face datasets).

Rows stream from the file into the database: COPY on PostgreSQL, batched inserts elsewhere. The other export kinds
(SFT, preferences, reward-model, calibration, verifiers) come back in through `webapp.exports.import_datasets`, which
reads files with the readers below."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any, NoReturn

import msgspec
from django.db import connection, transaction
from django.utils import timezone

from webapp.core import safejson
from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.tasks.models import Example, Task

FORMATS = ("jsonl", "csv", "parquet", "hf")
JSON_FIELDS = {"prompt_messages": list, "messages": list, "metadata": dict}
INT_FIELDS = ("step", "sample_index", "prompt_tokens", "completion_tokens", "latency_ms")
TEXT_FIELDS = {"model_name": 300, "group_key": 64, "completion": None, "finish_reason": 32, "error": None}
DB_COLUMNS = (
    "project_id", "task_id", "example_id", "step", "source", "model_name", "group_key", "sample_index",
    "prompt_messages", "messages", "completion", "prompt_tokens", "completion_tokens", "finish_reason", "latency_ms",
    "error", "metadata", "created_at", "import_record_id",
)
BATCH = 2000
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # one encoder, not one per call


def clean_messages(messages: list) -> list:
    """Messages read from Parquet or a Hugging Face dataset carry every field of the message struct, unset ones as
    None: drop those (content stays, None or not), so they come back as they were exported."""
    return [{k: v for k, v in m.items() if v is not None or k == "content"} if isinstance(m, dict) else m
            for m in messages]


def _records_jsonl(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    for n, raw in enumerate(stream, start=1):
        if raw.isspace():
            continue
        try:
            record = safejson.loads(raw)  # bytes: json decodes UTF-8 itself
        except ValueError as error:  # includes UnicodeDecodeError
            raise ApplicationError(f"line {n}: not valid JSON ({error}).") from None
        refuse_bad_text(n, "line", record, raw)
        yield n, record


def refuse_bad_text(pos: int, unit: str, record: Any, raw: str | bytes | None = None) -> None:
    problem = safejson.text_problem(record, raw)
    if problem is not None:
        raise ApplicationError(f"{unit} {pos}: contains {problem}, which cannot be stored. Nothing was imported; "
                               "remove it from the file and import again.", field="file")


def _records_csv(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    csv.field_size_limit(2**31 - 1)
    reader = csv.DictReader(io.TextIOWrapper(stream, encoding="utf-8", newline=""))
    try:
        for row in reader:
            # reader.line_num is the physical line where the record ended (records may span lines).
            if None in row:  # DictReader keeps the cells past the header under None; they were dropped silently
                width = len(reader.fieldnames or [])
                raise ApplicationError(
                    f"line {reader.line_num}: {width + len(row[None])} values, but the header has {width} columns "
                    f"({', '.join(reader.fieldnames or [])}). Check the quoting and the delimiter.", field="file")
            record = {k: (None if v == "" and k in (*INT_FIELDS, "example_id") else v) for k, v in row.items()}
            for value in record.values():
                if isinstance(value, str) and safejson.may_have_bad_text(value):
                    # A cell may carry JSON (messages, metadata): check what decoding it would give, too.
                    try:
                        decoded = safejson.loads(value) if value[:1] in ("[", "{", '"') else value
                    except ValueError:
                        decoded = value
                    refuse_bad_text(reader.line_num, "line", [value, decoded])
            yield reader.line_num, record
    except (UnicodeDecodeError, csv.Error) as error:
        raise ApplicationError(f"line {reader.line_num + 1}: not readable CSV ({error}).") from None


def _records_parquet(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(stream)
    except Exception as error:
        raise ApplicationError(f"Not a Parquet file ({error}).") from None
    n = 0
    for batch in parquet.iter_batches(batch_size=BATCH):
        for record in batch.to_pylist():
            n += 1
            refuse_bad_text(n, "row", record)
            yield n, record


def import_max_bytes() -> int:
    from webapp.tasks.services import import_max_bytes as task_import_max_bytes

    return task_import_max_bytes()


# A zip may not unpack to more than this many times the upload limit (a zip bomb stops before it is unpacked).
UNZIPPED_FACTOR = 10


def check_size(stream: IO[bytes]) -> None:
    """Refuse a file above RUBRICON_MAX_IMPORT_MB before reading a row (Django has spooled it to disk already)."""
    limit = import_max_bytes()
    size = getattr(stream, "size", None)
    if size is None and stream.seekable():
        here = stream.tell()
        size = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    if size is not None and size > limit:
        raise ApplicationError(
            f"The file is {size / 1024 / 1024:.1f} MB; imports are limited to {limit // (1024 * 1024)} MB. "
            "Split it into smaller files and import them one after another.", field="file", status=413)


@contextmanager
def unzipped(stream: IO[bytes]) -> Iterator[Path]:
    """Unpack an uploaded zip into a temporary folder (removed afterwards), refusing what would unpack too big."""
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError) as error:
        raise ApplicationError(f"Not a zip file ({error}).", field="file") from None
    with archive, tempfile.TemporaryDirectory(prefix="rubricon-import-") as tmp:
        limit = import_max_bytes() * UNZIPPED_FACTOR
        if sum(info.file_size for info in archive.infolist()) > limit:
            raise ApplicationError(f"The zip unpacks to more than {limit // (1024 * 1024)} MB.", field="file",
                                   status=413)
        try:
            archive.extractall(tmp)  # zipfile drops absolute paths and '..' from member names
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ApplicationError(f"The zip cannot be unpacked ({error}).", field="file") from None
        yield Path(tmp)


def _hf_folder(root: Path) -> Path:
    """The folder `save_to_disk` wrote: the zip's `dataset/` (what our export writes) or any folder holding a
    dataset_info.json next to a state.json."""
    for state in sorted(root.rglob("state.json"), key=lambda p: len(p.parts)):
        if (state.parent / "dataset_info.json").exists():
            return state.parent
    raise ApplicationError("The zip holds no Hugging Face dataset (no state.json + dataset_info.json, as "
                           "datasets' save_to_disk writes them).", field="file")


def _records_hf(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    import datasets

    with unzipped(stream) as root:
        try:
            dataset = datasets.load_from_disk(str(_hf_folder(root)), keep_in_memory=False)
        except Exception as error:  # datasets raises many types for a damaged folder
            raise ApplicationError(f"Not a readable Hugging Face dataset ({error}).", field="file") from None
        if isinstance(dataset, datasets.DatasetDict):
            raise ApplicationError("The zip holds a DatasetDict; import one split at a time.", field="file")
        n = 0
        for batch in dataset.with_format("arrow").iter(batch_size=BATCH):
            for record in batch.to_pylist():
                n += 1
                yield n, record
        del dataset  # release the memory-mapped files before the folder goes


# format -> (reader, what a position in the file is called in error messages)
READERS = {"jsonl": (_records_jsonl, "line"), "csv": (_records_csv, "line"), "parquet": (_records_parquet, "row"),
           "hf": (_records_hf, "row")}


def records(stream: IO[bytes], format: str) -> tuple[Iterator[tuple[int, Any]], str]:
    """(position, record) pairs of a file in one of FORMATS, and what a position is called ('line' or 'row')."""
    if format not in READERS:
        raise ApplicationError(f"Imports read {', '.join(FORMATS)}, not {format!r}.", field="format")
    check_size(stream)
    reader, unit = READERS[format]
    return reader(stream), unit


_UInt = Annotated[int, msgspec.Meta(ge=0, lt=2**31)]


class _Line(msgspec.Struct):
    """A rollouts-export JSONL line in the shape the exporter writes it, checked by msgspec in C. A line that does
    not fit (a number as text, a missing group key, JSON fields as text, ...) is not an error here: it goes the
    general way (`_RowBuilder.build`), which accepts what it accepts and names the line and field otherwise. JSON
    fields stay raw (msgspec has checked they are well-formed): PostgreSQL parses them into jsonb anyway."""

    task: str | None = None
    example_id: str | int | None = None
    step: _UInt | None = None
    sample_index: _UInt | None = None
    prompt_tokens: _UInt | None = None
    completion_tokens: _UInt | None = None
    latency_ms: _UInt | None = None
    model_name: Annotated[str, msgspec.Meta(max_length=300)] | None = None
    group_key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    completion: str | None = None
    finish_reason: Annotated[str, msgspec.Meta(max_length=32)] | None = None
    error: str | None = None
    prompt_messages: msgspec.Raw = msgspec.Raw()
    messages: msgspec.Raw = msgspec.Raw()
    metadata: msgspec.Raw = msgspec.Raw()


_decode_line = msgspec.json.Decoder(_Line).decode
_SOURCE = RolloutSource.IMPORT.value


def _raw_json(raw: msgspec.Raw, opening: str, empty: str) -> str | None:
    """The JSON text of a list (opening '[') or object ('{') field; None when it is something else."""
    if not raw:  # the line leaves the field out
        return empty
    text = str(raw, "utf-8")
    if safejson.may_be_too_deep(text):
        return None  # the general way decodes it with the nesting limit and names the line
    if text[0] == opening:
        return text
    return empty if text == "null" else None


class _RowBuilder:
    """Turns one record into the column values of a Rollout row, or raises an error naming where it was."""

    def __init__(self, project: Project, task: Task | None, unit: str, import_record_id: int | None = None):
        self.project = project
        self.import_record_id = import_record_id
        self.fixed_task = task
        self.unit = unit
        self.tasks: dict[str, int] = {}
        self.examples: dict[int, dict[str, int]] = {}
        self.now = timezone.now()
        self.now_text = self.now.isoformat()
        # Called before a lookup query: the COPY that rows stream into must end before the connection can query.
        self.before_query: Callable[[], None] = lambda: None

    def fail(self, pos: int, message: str) -> NoReturn:
        raise ApplicationError(f"{self.unit} {pos}: {message}")

    def task_id(self, pos: int, record: dict) -> int:
        if self.fixed_task is not None:
            return self.fixed_task.pk
        name = record.get("task")
        if not isinstance(name, str) or not name:
            self.fail(pos, "the row names no task (column 'task'); choose a task for the whole file.")
        if name not in self.tasks:
            self.before_query()
            task_id = Task.objects.filter(project=self.project, name=name).values_list("pk", flat=True).first()
            if task_id is None:
                self.fail(pos, f"no task named {name!r} in this project; choose a task for the whole file.")
            self.tasks[name] = task_id
        return self.tasks[name]

    def known_examples(self, task_id: int) -> dict[str, int]:
        """The task's examples, external id -> pk, read once per import (callers may add the ones they create)."""
        if task_id not in self.examples:
            self.before_query()
            self.examples[task_id] = dict(Example.objects.filter(task_id=task_id).values_list("external_id", "pk"))
        return self.examples[task_id]

    def example_id(self, pos: int, task_id: int, external_id: Any) -> int | None:
        if external_id is None or external_id == "":
            return None
        example = self.known_examples(task_id).get(str(external_id))
        if example is None:
            self.fail(pos, f"the task has no example {external_id!r}.")
        return example

    def build(self, pos: int, record: Any) -> tuple:
        if not isinstance(record, dict):
            self.fail(pos, "expected an object with rollout fields.")
        task_id = self.task_id(pos, record)
        get = record.get
        values: dict[str, Any] = {"project_id": self.project.pk, "task_id": task_id, "source": RolloutSource.IMPORT,
                                  "created_at": self.now, "import_record_id": self.import_record_id, "example_id": self.example_id(pos, task_id, get("example_id"))}
        for name in INT_FIELDS:
            value = get(name)
            if value is None or value == "":
                values[name] = 0 if name == "sample_index" else None
            elif type(value) is int and 0 <= value < 2**31:
                values[name] = value
            else:
                try:
                    number = int(value)
                except (TypeError, ValueError):
                    self.fail(pos, f"{name} must be a whole number, not {value!r}.")
                if isinstance(value, float) and value != number or not 0 <= number < 2**31:
                    self.fail(pos, f"{name} must be a whole number ≥ 0, not {value!r}.")
                values[name] = number
        for name, limit in TEXT_FIELDS.items():
            value = get(name)
            if value is None:
                value = ""
            elif type(value) is not str:
                self.fail(pos, f"{name} must be text.")
            elif limit and len(value) > limit:
                self.fail(pos, f"{name} is longer than {limit} characters.")
            values[name] = value
        if not values["group_key"]:
            self.fail(pos, "group_key is empty (rollouts of one prompt share a group key).")
        for name, kind in JSON_FIELDS.items():
            value = get(name)
            if value is None or value == "":
                value = kind()
            elif isinstance(value, str):  # tabular formats carry JSON as text
                try:
                    value = safejson.loads(value)
                except ValueError:
                    self.fail(pos, f"{name} is not valid JSON.")
            elif isinstance(value, list):  # Parquet and HF datasets carry messages as lists of structs
                value = clean_messages(value)
            if not isinstance(value, kind):
                self.fail(pos, f"{name} must be a JSON {'list' if kind is list else 'object'}.")
            values[name] = _dumps(value)
        return tuple([values[c] for c in DB_COLUMNS])


    def build_line(self, pos: int, line: _Line) -> tuple | None:
        """`build` for a line msgspec has decoded and checked; None sends it the general way."""
        if not line.group_key:
            return None
        prompt_messages = _raw_json(line.prompt_messages, "[", "[]")
        messages = _raw_json(line.messages, "[", "[]")
        metadata = _raw_json(line.metadata, "{", "{}")
        if prompt_messages is None or messages is None or metadata is None:
            return None
        if self.fixed_task is not None:
            task_id = self.fixed_task.pk
        else:
            task_id = self.tasks.get(line.task) if line.task else None
            if task_id is None:
                task_id = self.task_id(pos, {"task": line.task})
        external_id = line.example_id
        if external_id is None or external_id == "":
            example_id = None
        else:
            examples = self.examples.get(task_id)
            found = examples.get(str(external_id)) if examples is not None else None
            example_id = found if found is not None else self.example_id(pos, task_id, external_id)
        return (
            self.project.pk, task_id, example_id, line.step, _SOURCE, line.model_name or "", line.group_key,
            line.sample_index or 0, prompt_messages, messages, line.completion or "", line.prompt_tokens,
            line.completion_tokens, line.finish_reason or "", line.latency_ms, line.error or "", metadata,
            self.now_text, self.import_record_id,
        )


def _rows_jsonl(builder: _RowBuilder, stream: IO[bytes]) -> Iterator[tuple]:
    """Rows of a JSONL file: msgspec decodes and checks the lines in the shape an export writes them, the rest go
    through the general reader (the standard json module and `_RowBuilder.build`), which names the line it fails on."""
    build_line, build, loads = builder.build_line, builder.build, safejson.loads
    for n, raw in enumerate(stream, start=1):
        if raw.isspace():
            continue
        try:
            row = build_line(n, _decode_line(raw))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError is a DecodeError
            row = None
        if row is not None and safejson.may_have_bad_text(raw):
            row = None  # a NUL or surrogate escape somewhere: the general way decodes the line and checks it
        if row is None:
            try:
                record = loads(raw)  # bytes: json decodes UTF-8 itself
            except ValueError as error:  # includes UnicodeDecodeError
                raise ApplicationError(f"line {n}: not valid JSON ({error}).") from None
            refuse_bad_text(n, "line", record, raw)
            row = build(n, record)
        yield row


def _copy_rows(rows: Iterator[tuple], builder: _RowBuilder) -> int:
    """One COPY for the whole file, so that PostgreSQL stores rows while Python reads the next ones. A task or
    example lookup cannot run while a COPY is open on the connection, so the builder ends the COPY before one
    (once per task in the file) and the next row starts a new one."""
    table = Rollout._meta.db_table
    statement = f"COPY {table} ({', '.join(DB_COLUMNS)}) FROM STDIN"
    n = 0
    with connection.cursor() as cursor:
        opened: Any = None  # the context manager of the COPY in progress
        copy: Any = None

        def end(error: BaseException | None = None) -> None:
            nonlocal opened, copy
            if opened is not None:
                current, opened, copy = opened, None, None
                current.__exit__(type(error) if error else None, error, None)

        builder.before_query = end
        try:
            for row in rows:
                if copy is None:
                    opened = cursor.cursor.copy(statement)
                    copy = opened.__enter__()
                copy.write_row(row)
                n += 1
        except BaseException as error:
            end(error)
            raise
        finally:
            builder.before_query = lambda: None
        end()
    return n


def _insert_rows(rows: Iterator[tuple]) -> int:
    n, batch = 0, []
    for row in rows:
        values = dict(zip(DB_COLUMNS, row, strict=True))
        for name in JSON_FIELDS:
            values[name] = json.loads(values[name])
        batch.append(Rollout(**values))
        if len(batch) >= BATCH:
            n += len(Rollout.objects.bulk_create(batch))
            batch = []
    return n + len(Rollout.objects.bulk_create(batch))


def rollouts_import(*, project: Project, stream: IO[bytes], format: str, task: Task | None = None,
                    import_record_id: int | None = None) -> int:
    """Import every rollout in the file, or none. Returns how many were imported; each row names the import."""
    if task is not None and task.project_id != project.pk:
        raise ApplicationError("That task belongs to another project.", field="task")
    rows: Iterator[tuple]
    if format == "jsonl":
        check_size(stream)
        builder = _RowBuilder(project, task, "line", import_record_id)
        rows = _rows_jsonl(builder, stream)
    else:
        found, unit = records(stream, format)
        builder = _RowBuilder(project, task, unit, import_record_id)
        rows = (builder.build(pos, record) for pos, record in found)
    with transaction.atomic():
        count = _copy_rows(rows, builder) if connection.vendor == "postgresql" else _insert_rows(rows)
    if count == 0:
        raise ApplicationError("The file holds no rollouts.")
    return count


def rollouts_import_path(*, project: Project, path: Path, format: str | None = None, task: Task | None = None,
                         import_record_id: int | None = None) -> int:
    format = format or format_for(path)
    with open(path, "rb") as stream:
        return rollouts_import(project=project, stream=stream, format=format, task=task,
                               import_record_id=import_record_id)


def format_for(path: Path) -> str:
    return {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet", ".zip": "hf"}.get(path.suffix, "")
