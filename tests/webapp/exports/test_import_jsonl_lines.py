"""The JSONL rollouts import reads lines in the shape an export writes them through msgspec and streams one COPY;
lines in any other shape the general reader accepts must come out the same, COPYs restart around task lookups,
and errors still name the line and leave nothing behind."""

from __future__ import annotations

import io
import json

import pytest

from tests.factories import ExampleFactory, ProjectFactory, TaskFactory
from webapp.core.errors import ApplicationError
from webapp.exports.import_rollouts import rollouts_import
from webapp.rollouts.models import Rollout

FIELDS = ["task__name", "example__external_id", "step", "model_name", "group_key", "sample_index", "prompt_messages",
          "messages", "completion", "prompt_tokens", "completion_tokens", "finish_reason", "latency_ms", "error",
          "metadata", "source"]
PROMPT = [{"role": "user", "content": "What is 2 + 5? \\ tab\there"}]
MESSAGES = [*PROMPT, {"role": "assistant", "content": "line one\nline two\r\n<answer>7</answer> ünïcode ✓"}]


def project_with_tasks():
    project = ProjectFactory()
    for name in ("arith", "other"):
        task = TaskFactory(project=project, name=name)
        for external_id in ("ex-0", "7"):
            ExampleFactory(task=task, external_id=external_id)
    return project


def exported(**changes) -> dict:
    """A line as a rollouts export writes it."""
    return {"task": "arith", "example_id": "ex-0", "step": 3, "model_name": "bundled", "group_key": "g1",
            "sample_index": 1, "prompt_messages": PROMPT, "messages": MESSAGES, "completion": "line one\nline two",
            "prompt_tokens": 12, "completion_tokens": 48, "finish_reason": "stop", "latency_ms": 350, "error": "",
            "metadata": {"turns": 1, "nested": {"a": [1, 2.5, None, True]}}, **changes}


def stored(project) -> list[tuple]:
    return list(Rollout.objects.filter(project=project).order_by("pk").values_list(*FIELDS))


def jsonl(lines: list) -> io.BytesIO:
    return io.BytesIO("".join((x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)) + "\n"
                              for x in lines).encode())


@pytest.mark.django_db
def test_lines_in_other_shapes_store_the_same_as_exported_lines():
    same = exported()
    loose = [  # every one of these means the same rollout as `same`, through the general reader
        exported(step="3", sample_index=1.0, prompt_tokens="12"),
        exported(prompt_messages=json.dumps(PROMPT), messages=json.dumps(MESSAGES),
                 metadata=json.dumps(same["metadata"])),
        json.dumps(exported(), ensure_ascii=True, indent=None, separators=(" , ", " : ")),
    ]
    project = project_with_tasks()
    assert rollouts_import(project=project, stream=jsonl([same, *loose]), format="jsonl") == 4
    rows = stored(project)
    assert rows[0] == ("arith", "ex-0", 3, "bundled", "g1", 1, PROMPT, MESSAGES, "line one\nline two", 12, 48,
                       "stop", 350, "", same["metadata"], "import")
    assert rows[1:] == [rows[0]] * 3

    other = project_with_tasks()
    sparse = [
        {"task": "arith", "group_key": "g2"},  # everything else left out
        {"task": "arith", "group_key": "g2", "example_id": None, "step": None, "sample_index": None,
         "prompt_messages": None, "messages": None, "metadata": None, "model_name": None, "error": None},
        {"task": "arith", "group_key": "g2", "example_id": "", "sample_index": "", "prompt_messages": ""},
        {"task": "arith", "group_key": "g2", "example_id": 7},  # a number names the example whose id is "7"
    ]
    assert rollouts_import(project=other, stream=jsonl(sparse), format="jsonl") == 4
    empty = ("arith", None, None, "", "g2", 0, [], [], "", None, None, "", None, "", {}, "import")
    assert stored(other) == [empty, empty, empty, ("arith", "7", *empty[2:])]


@pytest.mark.django_db
def test_tasks_that_change_mid_file_restart_the_copy_and_keep_the_order():
    project = project_with_tasks()
    lines = [exported(task=("arith", "other")[n // 3 % 2], group_key=f"g{n}", example_id=("ex-0", "7")[n % 2])
             for n in range(12)]
    assert rollouts_import(project=project, stream=jsonl(lines), format="jsonl") == 12
    assert [(r[0], r[1], r[4]) for r in stored(project)] == [
        (line["task"], line["example_id"], line["group_key"]) for line in lines]

    # A fixed task for the whole file: the 'task' column is not read.
    chosen = project.tasks.get(name="other")
    again = rollouts_import(project=project, stream=jsonl([exported(task=None), exported(task="nope")]),
                            format="jsonl", task=chosen)
    assert again == 2 and Rollout.objects.filter(task=chosen).count() == 8


@pytest.mark.django_db
@pytest.mark.parametrize(("line", "message"), [
    (exported(step=-1), r"^line 5: step must be a whole number ≥ 0"),
    (exported(latency_ms=2**31), r"^line 5: latency_ms must be a whole number ≥ 0"),
    (exported(model_name="m" * 301), r"^line 5: model_name is longer than 300"),
    (exported(group_key=None), r"^line 5: group_key is empty"),
    (exported(completion=["not", "text"]), r"^line 5: completion must be text"),
    (exported(metadata=[1]), r"^line 5: metadata must be a JSON object"),
    (exported(prompt_messages='{"a": 1}'), r"^line 5: prompt_messages must be a JSON list"),
    (exported(messages="[not json"), r"^line 5: messages is not valid JSON"),
    (exported(task="nope"), r"^line 5: no task named 'nope'"),
    (exported(task="other", example_id="zzz"), r"^line 5: the task has no example 'zzz'"),
    ([1, 2], r"^line 5: expected an object"),
    ('{"task": "arith", "group_key": "g1"', r"^line 5: not valid JSON"),
    (b'{"task": "arith", "group_key": "g\xff"}', r"^line 5: not valid JSON"),
])
def test_a_bad_line_after_a_copy_restart_names_the_line_and_keeps_nothing(line, message):
    project = project_with_tasks()
    good = [exported(), exported(task="other"), exported(task="other", example_id="7"), exported()]
    data = jsonl(good).getvalue() + (line if isinstance(line, bytes) else
                                     (line if isinstance(line, str) else json.dumps(line)).encode()) + b"\n"
    with pytest.raises(ApplicationError, match=message):
        rollouts_import(project=project, stream=io.BytesIO(data + jsonl([exported()]).getvalue()), format="jsonl")
    assert not Rollout.objects.filter(project=project).exists()
    # The connection is usable afterwards: the same file without the bad line goes in.
    assert rollouts_import(project=project, stream=jsonl(good), format="jsonl") == 4
