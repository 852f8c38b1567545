"""The rollouts export built by Postgres (COPY, webapp.exports.copy_rows) writes the very file the Python writers
write from the same rows: JSONL byte for byte, Parquet with the same schema, values and row groups."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from django.db import connection

from tests.factories import ExampleFactory, ProjectFactory, RolloutFactory, TaskFactory, UserFactory
from tests.webapp.exports.conftest import build_scored_project
from webapp.exports import copy_rows, writers
from webapp.exports.datasets import dataset_build
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="COPY is Postgres'")

# Floats whose shortest text Postgres and Python shape differently (1 vs 1.0, exponents from 1e15 vs 1e16), and
# plain ones.
AWKWARD = [1 / 3, 2 / 3, 0.1 + 0.2, 1e-7, 1.5e-5, 0.0001, -0.0, 0.0, 1.0, 12345678.0, 1e15, 1234567890123456.5,
           999999999999999.9, 123456789012345.67, 5e-324, 0.30000000000000004, -2.5]
TEXTS = [
    "<script>alert('x')</script> &amp; <b>bold</b>",
    "emoji 😀, RTL עברית, CJK 漢字, combining é, ß ẞ",
    "controls \x01\x02\x1f tab\t newline\n cr\r backslash \\ quote \" slash /",
    "line separators \u2028 \u2029, BOM \ufeff, nbsp \u00a0, DEL \x7f",
    "",
]


def build(project=None) -> dict:
    """The export test project plus rollouts with nulls, awkward floats and texts, nested tool-call messages,
    several labels, and a rollout without an example, scores or a total."""
    data = build_scored_project(project)
    project, task, version = data["project"], data["task"], data["version"]
    other = UserFactory(username="ann-ü\"<b>")
    bare = TaskFactory(project=project, name="bare \"task\" ✓")
    for i, value in enumerate(AWKWARD):
        text = TEXTS[i % len(TEXTS)]
        example = ExampleFactory(task=task, external_id=f"awk-{i} {text[:10]}", prompt=text, answer=text[::-1],
                                 split="eval" if i % 2 else "train")
        calls = [{"id": f"call-{i}", "type": "function",
                  "function": {"name": "search", "arguments": '{"q": "' + text[:5].replace('"', "") + '"}'}}]
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text},
                    {"role": "assistant", "content": None, "tool_calls": calls},
                    {"role": "tool", "tool_call_id": f"call-{i}", "content": [{"type": "text", "text": text}]},
                    {"role": "assistant", "content": text}]
        rollout = RolloutFactory(
            project=project, task=task if i % 4 else bare, example=example if i % 5 else None,
            group_key=f"awk-{i // 3}", sample_index=i % 3, completion=text, prompt_messages=messages[:2],
            messages=messages, model_name=text[:20], prompt_tokens=None if i % 3 == 0 else i, completion_tokens=i,
            finish_reason="length" if i % 2 else "stop", latency_ms=None if i % 4 == 0 else 10 * i,
            error=text if i % 6 == 0 else "", metadata={"nested": {"list": [1, 2.5, None, text]}, "i": i},
        )
        if i % 7 == 3:
            continue  # nothing scored or labeled
        CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                      judge_fingerprint="judge-a", score=value, raw_choice=text[:30],
                                      rationale=text)
        CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                      judge_fingerprint="programmatic", score=None if i % 2 else 1.0)
        RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="judge-a",
                                    total=None if i % 5 == 1 else value)
        HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                  annotator=data["annotator"], value=None if i % 3 else value, choice=text[:20],
                                  comment=text, reward_hacking=bool(i % 2))
        HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                  annotator=other, value=1.0, comment="")
    return data


def both(project, tmp_path: Path, format: str, filters: dict) -> tuple[Path, Path, list]:
    """(file written through COPY, file written by the Python path, progress reported by the COPY path)."""
    dataset = dataset_build(project=project, kind="rollouts", filters=filters)
    assert dataset.copy is not None
    ext = writers.EXTENSIONS[format]
    fast, slow = tmp_path / f"copy.{ext}", tmp_path / f"python.{ext}"
    progress: list[int] = []
    write = {"jsonl": writers._copy_jsonl, "parquet": writers._copy_parquet}[format]
    n = write(fast, dataset, progress.append)
    python = dataclasses.replace(dataset_build(project=project, kind="rollouts", filters=filters), copy=None)
    assert writers.WRITERS[format](slow, python, None) == n
    return fast, slow, progress


def same_parquet(fast: Path, slow: Path) -> None:
    a, b = pq.ParquetFile(fast), pq.ParquetFile(slow)
    assert a.schema_arrow == b.schema_arrow
    assert a.metadata.num_rows == b.metadata.num_rows
    assert [a.metadata.row_group(i).num_rows for i in range(a.num_row_groups)] == \
        [b.metadata.row_group(i).num_rows for i in range(b.num_row_groups)]
    rows_a, rows_b = a.read().to_pylist(), b.read().to_pylist()
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ra:  # -0.0 == 0.0 and nan != nan: compare floats by their bits
            va, vb = ra[key], rb[key]
            if isinstance(va, float):
                assert math.copysign(1, va) == math.copysign(1, vb) and (va == vb or va != va and vb != vb), key
            else:
                assert va == vb, key


FILTERS = [{}, {"limit": 7}, {"split": "eval"}, {"score_min": 0.3}]


@pytest.mark.django_db
@pytest.mark.parametrize("filters", FILTERS, ids=["all", "limit", "split", "score_min"])
def test_copy_jsonl_is_byte_for_byte_the_python_export(tmp_path, filters):
    data = build()
    version = {"rubric_version": data["version"].pk}
    for extra in ({**version, **filters}, {} if "score_min" in filters else filters):  # with and without a version
        fast, slow, progress = both(data["project"], tmp_path, "jsonl", extra)
        assert fast.read_bytes() == slow.read_bytes()
        assert fast.read_bytes().count(b"\n") == progress[-1] > 0


@pytest.mark.django_db
@pytest.mark.parametrize("filters", FILTERS, ids=["all", "limit", "split", "score_min"])
def test_copy_parquet_has_the_python_exports_schema_and_values(tmp_path, filters):
    data = build()
    fast, slow, _ = both(data["project"], tmp_path, "parquet", {"rubric_version": data["version"].pk, **filters})
    same_parquet(fast, slow)


@pytest.mark.django_db
def test_copy_exports_in_several_chunks_and_row_groups(tmp_path, monkeypatch):
    """Chunk boundaries (one COPY per PROGRESS_EVERY rows, keyset on the id) and row-group cuts inside a chunk."""
    data = build()
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 4)
    monkeypatch.setattr(writers, "ROW_GROUP", 3)
    monkeypatch.setattr(writers, "COPY_MIN_CHUNK", 1)
    filters = {"rubric_version": data["version"].pk}
    fast, slow, progress = both(data["project"], tmp_path, "jsonl", filters)
    assert fast.read_bytes() == slow.read_bytes()
    total = fast.read_bytes().count(b"\n")
    assert progress == [*range(4, total, 4), total]
    fast, slow, _ = both(data["project"], tmp_path, "parquet", filters)
    same_parquet(fast, slow)
    assert pq.ParquetFile(fast).num_row_groups == -(-total // 3)


@pytest.mark.django_db
@pytest.mark.parametrize("value", [1e16, 3.0e17 + 64, -2.0**70, float("nan"), float("inf")])
def test_a_float_postgres_cannot_print_as_python_sends_the_export_the_python_way(tmp_path, value):
    """From 1e16 on Postgres does not always print the shortest digits: a JSONL line (or, in Parquet, the scores'
    JSON text) holding such a float carries a marker and the writer falls back to the Python rows, so the file is
    still the Python writer's. Parquet reads the reward itself as a number, which any float (NaN and infinities
    too) survives exactly, so that one stays on the COPY path."""
    data = build()
    RolloutScore.objects.filter(rollout=data["rollouts"][4]).update(total=value)
    filters = {"rubric_version": data["version"].pk}
    dataset = dataset_build(project=data["project"], kind="rollouts", filters=filters)
    if math.isfinite(value):  # JSONL prints NaN and Infinity as Python does
        with pytest.raises(copy_rows.CopyUnavailable):
            writers._copy_jsonl(tmp_path / "x.jsonl", dataset, None)
    fast, slow, _ = both(data["project"], tmp_path, "parquet", filters)  # the COPY path writes the reward
    same_parquet(fast, slow)
    CriterionScore.objects.filter(rollout=data["rollouts"][4]).update(score=value)
    if math.isfinite(value):
        dataset = dataset_build(project=data["project"], kind="rollouts", filters=filters)
        with pytest.raises(copy_rows.CopyUnavailable):
            writers._copy_parquet(tmp_path / "x.parquet", dataset, None)
    for format in ("jsonl", "parquet"):
        out = tmp_path / f"out.{format}"
        writers.WRITERS[format](out, dataset_build(project=data["project"], kind="rollouts", filters=filters))
        slow = tmp_path / f"python.{format}"
        python = dataclasses.replace(dataset_build(project=data["project"], kind="rollouts", filters=filters),
                                     copy=None)
        writers.WRITERS[format](slow, python)
        if format == "jsonl":
            assert out.read_bytes() == slow.read_bytes()
        else:
            same_parquet(out, slow)


@pytest.mark.django_db
def test_an_empty_selection_writes_empty_files(tmp_path):
    project = ProjectFactory()
    TaskFactory(project=project)
    fast, slow, progress = both(project, tmp_path, "jsonl", {})
    assert fast.read_bytes() == slow.read_bytes() == b"" and progress == [0]
    fast, slow, _ = both(project, tmp_path, "parquet", {})
    same_parquet(fast, slow)


@pytest.mark.django_db
def test_without_any_label_the_copy_skips_the_label_lookup_and_writes_the_same(tmp_path):
    data = build()
    HumanLabel.objects.filter(rollout__project=data["project"]).delete()
    dataset = dataset_build(project=data["project"], kind="rollouts", filters={})
    assert "reviews_humanlabel" not in dataset.copy.build(copy_rows.LINES, 0, 10, None)[0]
    for filters in ({}, {"rubric_version": data["version"].pk}):
        fast, slow, _ = both(data["project"], tmp_path, "jsonl", filters)
        assert fast.read_bytes() == slow.read_bytes()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("streams", [1, 2])
def test_copy_streams_on_their_own_connections_write_the_same_files(tmp_path, monkeypatch, settings, streams):
    """Outside a transaction the chunks are copied by `streams` threads on connections of their own, ahead of
    the chunk being written, with boundaries from an index scan of the ids: the same rows, in the same order, in
    the same row groups (small chunks, a limit that ends inside a chunk, a filter)."""
    data = build()
    settings.RUBRICON_EXPORT_COPY_STREAMS = streams
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 4)
    monkeypatch.setattr(writers, "ROW_GROUP", 3)
    monkeypatch.setattr(writers, "COPY_MIN_CHUNK", 1)
    assert copy_rows.streams() == streams
    version = {"rubric_version": data["version"].pk}
    for filters in (version, {**version, "limit": 10}, {"split": "eval"}, {**version, "limit": 8}):
        fast, slow, progress = both(data["project"], tmp_path, "jsonl", filters)
        assert fast.read_bytes() == slow.read_bytes()
        total = fast.read_bytes().count(b"\n")
        assert total > 4 and progress == [*range(4, total, 4), total]
        fast, slow, _ = both(data["project"], tmp_path, "parquet", filters)
        same_parquet(fast, slow)
        assert pq.ParquetFile(fast).num_row_groups == -(-total // 3)
    assert not [t for t in threading.enumerate() if t.name.startswith("export-copy-")]


@pytest.mark.django_db(transaction=True)
def test_an_error_in_a_copy_stream_reaches_the_writer_and_ends_the_streams(tmp_path, monkeypatch, settings):
    data = build()
    settings.RUBRICON_EXPORT_COPY_STREAMS = 2
    monkeypatch.setattr(writers, "PROGRESS_EVERY", 4)
    monkeypatch.setattr(writers, "COPY_MIN_CHUNK", 1)
    dataset = dataset_build(project=data["project"], kind="rollouts", filters={})
    # Chunk 3 (rows 9-12) starts after the 8th row. Chosen by where it starts, not by the order of the calls: the
    # streams' threads build their chunks in whichever order they get to them (counting calls broke chunk 2 instead
    # whenever the first stream took chunk 3 before the second one had built chunk 2).
    from webapp.rollouts.models import Rollout

    third_after = list(Rollout.objects.filter(project=data["project"]).order_by("id").values_list("id", flat=True))[7]

    def build_sql(shape, after, size, upto):
        return ("SELECT 1 / 0", []) if after == third_after else dataset.copy.build(shape, after, size, upto)

    broken = dataclasses.replace(dataset, copy=dataclasses.replace(dataset.copy, build=build_sql))
    progress: list[int] = []
    with pytest.raises(psycopg.errors.DivisionByZero):
        writers._copy_jsonl(tmp_path / "x.jsonl", broken, progress.append)
    assert progress == [4, 8]  # the chunks before the broken one were written
    assert not [t for t in threading.enumerate() if t.name.startswith("export-copy-")]
