"""Streaming writers: rows go to disk as they come (JSONL/CSV line by line, Parquet one row group at a time), so an
export's memory does not grow with its size. Columns of type json and messages are JSON text; JSONL embeds them as
JSON values and CSV keeps them as JSON strings. Parquet and HF datasets keep message lists as lists of structs
(role, content, name, tool_call_id, tool_calls), as TRL's conversational formats want them; other json columns
(free-form objects) stay JSON strings there."""

from __future__ import annotations

import csv
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

from webapp.exports import copy_rows
from webapp.exports.datasets import BOOL, FLOAT, INT, JSON, MESSAGES, Column, Dataset

ROW_GROUP = 10_000
PROGRESS_EVERY = 10_000
# COPY reads PROGRESS_EVERY rows per statement (progress and cancel are checked between them), at least this many.
COPY_MIN_CHUNK = 100
Progress = Callable[[int], None]


def _counted(rows: Iterable[tuple], on_progress: Progress | None) -> Iterator[tuple]:
    n = 0
    for n, row in enumerate(rows, start=1):  # noqa: B007
        yield row
        if on_progress and n % PROGRESS_EVERY == 0:
            on_progress(n)
    if on_progress:
        on_progress(n)


def write_jsonl_stream(out: TextIO, columns: list[Column], rows: Iterable[tuple]) -> int:
    """One JSON object per line. Scalars go through one C-encoded json.dumps per row; json columns are already
    JSON text and are spliced in as they are (never decoded and re-encoded)."""
    scalar_idx = [i for i, c in enumerate(columns) if c.type not in (JSON, MESSAGES)]
    scalar_names = [columns[i].name for i in scalar_idx]
    bool_idx = [k for k, i in enumerate(scalar_idx) if columns[i].type == BOOL]
    json_parts = [(i, "," + json.dumps(columns[i].name) + ":") for i, c in enumerate(columns)
                  if c.type in (JSON, MESSAGES)]
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    n = 0
    buffer: list[str] = []
    for row in rows:
        values = [row[i] for i in scalar_idx]
        for k in bool_idx:  # SQLite hands booleans back as 0/1
            if values[k] is not None:
                values[k] = bool(values[k])
        head = dumps(dict(zip(scalar_names, values, strict=True)))
        tail = "".join([key + ("null" if row[i] is None else row[i]) for i, key in json_parts])
        buffer.append((head[:-1] + tail + "}\n") if scalar_names else "{" + tail[1:] + "}\n")
        n += 1
        if len(buffer) >= 1000:
            out.write("".join(buffer))
            buffer.clear()
    out.write("".join(buffer))
    return n


def _copied(dataset: Dataset, shape: str, on_progress: Progress | None) -> Iterator[tuple[copy_rows.Chunk, int]]:
    """COPY chunks of the dataset's rows with the running total, reporting progress (and so checking for cancel)
    between chunks."""
    assert dataset.copy is not None
    n = 0
    for chunk in copy_rows.copy_chunks(dataset.copy, shape=shape, rows=max(PROGRESS_EVERY, COPY_MIN_CHUNK)):
        n += chunk.rows
        yield chunk, n
        if on_progress:
            on_progress(n)
    if on_progress and n == 0:
        on_progress(0)


def _copy_jsonl(path: Path, dataset: Dataset, on_progress: Progress | None) -> int:
    n = 0
    with open(path, "wb") as out:
        for chunk, n in _copied(dataset, copy_rows.LINES, on_progress):  # noqa: B007
            if copy_rows.MARKER in chunk.data:  # a value only Python writes right
                raise copy_rows.CopyUnavailable
            out.write(chunk.data)
    return n


def write_jsonl(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    if dataset.copy is not None and copy_rows.available():
        try:
            return _copy_jsonl(path, dataset, on_progress)
        except copy_rows.CopyUnavailable:
            pass  # the rows iterator is untouched: write them the Python way
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        return write_jsonl_stream(out, dataset.columns, _counted(dataset.rows, on_progress))


def write_csv(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    bools = [i for i, c in enumerate(dataset.columns) if c.type == BOOL]
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([c.name for c in dataset.columns])
        for row in _counted(dataset.rows, on_progress):
            if bools:
                row = tuple(("true" if v else "false") if i in bools and v is not None else v for i, v in enumerate(row))
            writer.writerow(row)
            n += 1
    return n


def message_type():
    import pyarrow as pa

    call = pa.struct([("id", pa.string()), ("type", pa.string()),
                      ("function", pa.struct([("name", pa.string()), ("arguments", pa.string())]))])
    return pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("name", pa.string()),
                               ("tool_call_id", pa.string()), ("tool_calls", pa.list_(call))]))


def arrow_schema(columns: list[Column]):
    import pyarrow as pa

    types = {INT: pa.int64(), FLOAT: pa.float64(), BOOL: pa.bool_(), JSON: pa.string(), MESSAGES: message_type()}
    return pa.schema([pa.field(c.name, types.get(c.type, pa.string())) for c in columns])


def _content(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: their text
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return json.dumps(value)


def _struct_messages(text: str | None) -> list[dict] | None:
    """A messages column's JSON text as rows of the message struct."""
    if text is None:
        return None
    out = []
    for message in json.loads(text):
        calls = message.get("tool_calls") or None
        out.append({
            "role": message.get("role"), "content": _content(message.get("content")), "name": message.get("name"),
            "tool_call_id": message.get("tool_call_id"),
            "tool_calls": [{"id": c.get("id"), "type": c.get("type") or "function", "function": {
                "name": (c.get("function") or {}).get("name"),
                "arguments": _content((c.get("function") or {}).get("arguments"))}} for c in calls] if calls else None,
        })
    return out


def _copy_parquet(path: Path, dataset: Dataset, on_progress: Progress | None) -> int:
    """The export's columns from COPY as CSV, read by pyarrow's CSV reader with the export's schema, written in
    row groups of ROW_GROUP rows (as the Python path cuts them, whatever the COPY chunks)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    assert dataset.copy is not None
    if any(c.type == MESSAGES for c in dataset.columns):
        raise copy_rows.CopyUnavailable  # nested message structs are built in Python
    schema = arrow_schema(dataset.columns)
    pool = _memory_pool()
    read = pcsv.ReadOptions(column_names=schema.names)
    parse = pcsv.ParseOptions(newlines_in_values=True)
    convert = pcsv.ConvertOptions(column_types=schema, null_values=[""], strings_can_be_null=True,
                                  quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"])
    json_columns = [c.name for c in dataset.columns if c.type == JSON]
    n = 0
    pending: list = []
    pending_rows = 0
    with pq.ParquetWriter(str(path), schema, compression="zstd", memory_pool=pool) as writer:
        for chunk, n in _copied(dataset, copy_rows.COLUMNS, on_progress):  # noqa: B007
            table = pcsv.read_csv(pa.BufferReader(chunk.data), read_options=read, parse_options=parse,
                                  convert_options=convert, memory_pool=pool)
            if copy_rows.MARKER in chunk.data and _marked(table, json_columns):
                raise copy_rows.CopyUnavailable
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= ROW_GROUP:
                rest = pa.concat_tables(pending, memory_pool=pool)
                full = pending_rows - pending_rows % ROW_GROUP
                writer.write_table(rest.slice(0, full), row_group_size=ROW_GROUP)
                pending, pending_rows = [rest.slice(full)], pending_rows - full
        if pending_rows:
            writer.write_table(pa.concat_tables(pending, memory_pool=pool), row_group_size=ROW_GROUP)
        elif n == 0:
            writer.write_table(schema.empty_table())
    return n


def _marked(table, json_columns: list[str]) -> bool:
    """Whether a JSON column holds the marker: JSON text never holds a raw control character, so one there marks a
    float Python writes otherwise (a raw one in a text column is the text's own)."""
    import pyarrow.compute as pc

    return any(pc.any(pc.match_substring(table[name], copy_rows.MARKER.decode())).as_py() for name in json_columns)


def _memory_pool():
    """jemalloc where pyarrow has it, handing freed pages back at once: the export's peak RSS is ~40 MB lower
    than with the default mimalloc pool, which keeps each thread's freed pages."""
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
    except NotImplementedError:
        return None
    return pool


def write_parquet(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    if dataset.copy is not None and copy_rows.available():
        try:
            return _copy_parquet(path, dataset, on_progress)
        except copy_rows.CopyUnavailable:
            pass  # the rows iterator is untouched: write them the Python way
    return _write_parquet_rows(path, dataset, on_progress)


def _write_parquet_rows(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(dataset.columns)
    n = 0
    buffer: list[tuple] = []

    messages = {i for i, c in enumerate(dataset.columns) if c.type == MESSAGES}

    def flush(writer) -> None:
        columns = [list(values) if i not in messages else [_struct_messages(v) for v in values]
                   for i, values in enumerate(zip(*buffer, strict=True))]
        arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=ROW_GROUP)
        buffer.clear()

    with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
        for row in _counted(dataset.rows, on_progress):
            buffer.append(row)
            n += 1
            if len(buffer) >= ROW_GROUP:
                flush(writer)
        if buffer:
            flush(writer)
        elif n == 0:
            writer.write_table(schema.empty_table())
    return n


def write_hf(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    """`datasets.Dataset.save_to_disk`, zipped. Rows stream to Parquet first; datasets converts it to its Arrow
    files without holding the rows in memory."""
    import datasets

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        parquet = Path(tmp) / "rows.parquet"
        n = write_parquet(parquet, dataset, on_progress)
        features = datasets.Features.from_arrow_schema(arrow_schema(dataset.columns))
        hf = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(Path(tmp) / "cache"), features=features,
                                           keep_in_memory=False)
        saved = Path(tmp) / "dataset"
        hf.save_to_disk(str(saved))
        _zip_dir(saved, path, "dataset")
    return n


def write_verifiers(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    """A verifiers 0.4 run folder, zipped: traces.jsonl (one episode per line) and configs/resolved/eval.json."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        traces = Path(tmp) / "traces.jsonl"
        n = 0
        with open(traces, "w", encoding="utf-8", newline="\n") as out:
            for (episode,) in _counted(dataset.rows, on_progress):
                out.write(episode + "\n")
                n += 1
        meta = dataset.metadata  # complete once the rows are consumed
        # Only fields verifiers' EvalConfig knows (it forbids others); the env id is on every episode, and an env
        # named here would have to be an installed plugin.
        config = {"model": meta.get("model", ""), "num_rollouts": meta.get("rollouts_per_example", 1),
                  "sampling": {}, "run": {"name": meta.get("env_id", "")}, "push": False}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(traces, "traces.jsonl")
            archive.writestr("configs/resolved/eval.json", json.dumps(config, indent=2, ensure_ascii=False))
    return n


def write_verifiers_03(path: Path, dataset: Dataset, on_progress: Progress | None = None) -> int:
    """results.jsonl + metadata.json, as verifiers ≤ 0.3's `vf-eval` writes them, in one zip."""
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        results = Path(tmp) / "results.jsonl"
        n = write_jsonl(results, dataset, on_progress)  # metadata is complete once the rows are consumed
        metadata = {"env_args": {}, "base_url": "", "sampling_args": {}, "date": "", "time": 0.0,
                    "pass_at_k": {}, "pass_all_k": {}, "pass_threshold": 0.5, "usage": None,
                    "version_info": {"vf_version": "0.3.1", "vf_commit": None, "env_version": None,
                                     "env_commit": None}, **dataset.metadata}
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(results, "results.jsonl")
            archive.writestr("metadata.json", json.dumps(metadata, indent=2, ensure_ascii=False))
    return n


def _zip_dir(folder: Path, target: Path, prefix: str) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{prefix}/{file.relative_to(folder)}")


WRITERS: dict[str, Callable[[Path, Dataset, Progress | None], int]] = {
    "jsonl": write_jsonl,
    "csv": write_csv,
    "parquet": write_parquet,
    "hf": write_hf,
}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "hf": "zip"}
