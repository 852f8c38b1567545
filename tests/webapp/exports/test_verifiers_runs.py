"""verifiers 0.4 runs both ways, checked with verifiers itself: a run folder written by verifiers' own writers
(`write_config`, `write_episode`) imports with its trajectories, rewards and metrics, and what Rubricon exports in
either layout reads back with verifiers' readers (0.4 `read_episodes` and `EvalConfig`; for ≤ 0.3 the
`load_outputs` contract of verifiers 0.3.1, restated below because 0.4.0 ships no `verifiers.legacy`)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pydantic import BaseModel, ConfigDict
from rest_framework.test import APIClient

from tests.factories import ExampleFactory, RubricFactory, RubricVersionFactory, TaskFactory
from tests.support.requires import installed
from tests.webapp.api.builders import SPEC
from tests.webapp.exports.conftest import GROUPS
from tests.webapp.exports.test_import_kinds import export_file
from webapp.core.errors import ApplicationError
from webapp.exports.import_datasets import (
    VERIFIERS_JUDGE,
    dataset_import,
    dataset_import_path,
    verifiers_import,
)
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.rollouts.models import Rollout
from webapp.tasks.models import Example

pytestmark = installed("verifiers.v1")


def _wire_types():
    from verifiers.v1.configs.agent import WireAgentConfig
    from verifiers.v1.state import State
    from verifiers.v1.task import WireTaskData
    from verifiers.v1.trace import Trace

    return Trace[WireTaskData, State, WireAgentConfig]


def read_run(folder: Path) -> list:
    """verifiers' own reader, as `vf-replay` reads a run."""
    from verifiers.v1.utils import trace_store

    return trace_store.read_episodes(folder, _wire_types())


def write_run(folder: Path) -> Path:
    """A 0.4 run folder written by verifiers' writers: two tasks × two rollouts of a tool-using agent, weighted
    rewards (`correct` weight 1, `format` weight 0.5), a metric, one rollout cut by max_output_tokens and one that
    failed with an error."""
    from verifiers.v1.cli.output import write_config
    from verifiers.v1.configs.agent import WireAgentConfig
    from verifiers.v1.configs.cli.eval import EvalConfig
    from verifiers.v1.episode import EnvInfo, Episode, GroupInfo
    from verifiers.v1.graph import MessageNode
    from verifiers.v1.state import State
    from verifiers.v1.task import WireTaskData
    from verifiers.v1.trace import AgentInfo, Error, ModelCall, TimeSpan, Timing, TraceTask
    from verifiers.v1.types import (
        AssistantMessage,
        SamplingConfig,
        SystemMessage,
        Tool,
        ToolCall,
        ToolMessage,
        Usage,
        UserMessage,
    )
    from verifiers.v1.utils import trace_store

    folder.mkdir(parents=True, exist_ok=True)
    write_config(EvalConfig(model="smollm2-135m", num_rollouts=2, push=False,
                            sampling=SamplingConfig(temperature=0.7, max_tokens=64)), folder)
    trace_type = _wire_types()
    tasks = [WireTaskData(idx=0, id="sum-1", prompt="What is 2 + 3?", system_prompt="Use the calculator.",
                          answer="5", level=1),
             WireTaskData(idx=1, id="prod-1", prompt="What is 7 * 6?", system_prompt="Use the calculator.",
                          answer="42", level=2)]
    calc = Tool(name="calc", description="Evaluate arithmetic", parameters={"type": "object"})
    for t, data in enumerate(tasks):
        task = TraceTask[WireTaskData](type="ArithTask", data=data, key=f"key-{t}", hash=f"hash-{t}")
        for sample in range(2):
            answer = data.answer if sample == 0 else "0"
            nodes = [
                MessageNode(message=SystemMessage(content="Use the calculator."), tools=[calc]),
                MessageNode(parent=0, message=UserMessage(content=data.prompt)),
                MessageNode(parent=1, sampled=True, message=AssistantMessage(
                    content="Let me compute.", tool_calls=[ToolCall(id=f"call-{t}{sample}", name="calc",
                                                                    arguments='{"expr": "x"}')])),
                MessageNode(parent=2, message=ToolMessage(tool_call_id=f"call-{t}{sample}", content=answer,
                                                          name="calc")),
                MessageNode(parent=3, sampled=True, message=AssistantMessage(content=f"<answer>{answer}</answer>")),
            ]
            calls = [
                ModelCall(node=2, model="smollm2-135m", finish_reason="tool_calls",
                          usage=Usage(prompt_tokens=30, completion_tokens=8), time=TimeSpan(start=100.0, end=100.5)),
                ModelCall(node=4, model="smollm2-135m", finish_reason="length" if (t, sample) == (1, 1) else "stop",
                          usage=Usage(prompt_tokens=45, completion_tokens=6), time=TimeSpan(start=101.0, end=101.25)),
            ]
            trace = trace_type(task=task, agent=AgentInfo[WireAgentConfig](config=WireAgentConfig(
                model="smollm2-135m")), nodes=nodes, calls=calls,
                timing=Timing(start=99.0, agent={"start": 100.0, "end": 101.5}))
            trace.record_reward("correct", 1.0 if sample == 0 else 0.0, 1.0)
            trace.record_reward("format", 1.0, 0.5)
            trace.record_metric("num_tool_calls", 1)
            if (t, sample) == (1, 1):
                trace.stop("max_output_tokens")
            elif (t, sample) == (0, 1):
                trace.errors.append(Error(type="ToolError", message="calc timed out"))
                trace.stop("tool_error")
            else:
                trace.ok = True
                trace.stop("agent_completed")
            episode = Episode[WireTaskData, State, WireAgentConfig](
                env=EnvInfo(id="arith-env"), task=task, traces=[trace], ok=trace.ok, group=GroupInfo(id=f"g{t}"))
            trace_store.write_episode(folder, episode)
    return folder


def _zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.rglob("*"):
            if path.is_file():
                archive.write(path, f"my-run/{path.relative_to(folder)}")
    return buffer.getvalue()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "outputs" / "arith-env--smollm2")


def _project(make_member):
    user, project = make_member("editor")
    task = TaskFactory(project=project, name="arith")
    # One example the taskset names by id, one a Rubricon task holds under another id but with the same prompt.
    by_id = ExampleFactory(task=task, external_id="sum-1", prompt="something else")
    by_prompt = ExampleFactory(task=task, external_id="ex-product", prompt="What is 7 * 6?")
    version = RubricVersionFactory(rubric=RubricFactory(project=project, task=task), spec=SPEC)
    return user, project, task, version, by_id, by_prompt


@pytest.mark.django_db
@pytest.mark.parametrize("how", ["folder", "zip", "two files"])
def test_a_verifiers_04_run_imports_with_its_trajectories_and_rewards(run_dir, make_member, how):
    _, project, task, version, by_id, by_prompt = _project(make_member)
    if how == "folder":
        result = dataset_import_path(path=run_dir.parent, project=project, kind="verifiers", task=task,
                                     rubric_version=version)
    elif how == "zip":
        result = verifiers_import(project=project, results=io.BytesIO(_zip_folder(run_dir)), task=task,
                                  rubric_version=version)
    else:
        with open(run_dir / "traces.jsonl", "rb") as traces, open(run_dir / "configs/resolved/eval.json", "rb") as cfg:
            result = dataset_import(project=project, stream=traces, kind="verifiers", format="jsonl", task=task,
                                    rubric_version=version, metadata=cfg)
    assert (result.rollouts, result.examples, result.scores) == (4, 0, 4)

    episodes = read_run(run_dir)
    traces = [episode.traces[0] for episode in episodes]
    rollouts = list(Rollout.objects.filter(project=project).order_by("id"))
    assert [r.example_id for r in rollouts] == [by_id.pk, by_id.pk, by_prompt.pk, by_prompt.pk]
    assert len({r.group_key for r in rollouts}) == 2 and [r.sample_index for r in rollouts] == [0, 1, 0, 1]
    for rollout, trace in zip(rollouts, traces, strict=True):
        # The whole trajectory, as verifiers reads it: roles, text, tool calls and tool results.
        messages = [m.model_dump(exclude_none=True) for m in trace.messages]
        assert [m["role"] for m in rollout.messages] == [m["role"] for m in messages]
        assert [m.get("content") for m in rollout.messages] == [m.get("content") for m in messages]
        call = messages[2]["tool_calls"][0]
        assert rollout.messages[2]["tool_calls"] == [{"id": call["id"], "type": "function",
                                                      "function": {"name": "calc", "arguments": call["arguments"]}}]
        assert rollout.messages[3]["tool_call_id"] == call["id"] and rollout.messages[3]["name"] == "calc"
        assert rollout.prompt_messages == rollout.messages[:2]
        assert rollout.completion == trace.last_reply
        assert rollout.model_name == "smollm2-135m"
        assert (rollout.prompt_tokens, rollout.completion_tokens) == (trace.num_input_tokens, trace.num_output_tokens)
        assert rollout.latency_ms == 1500
        # verifiers' reward (its names and weights) is an external score, not our rubric total.
        external = rollout.metadata["external_scores"]["verifiers"]
        assert external["reward"] == pytest.approx(trace.reward)
        assert external["rewards"] == {k: v.model_dump() for k, v in trace.rewards.items()}
        assert external["metrics"] == trace.metrics
        assert rollout.metadata["verifiers"]["sampling"] == {"temperature": 0.7, "max_tokens": 64}
        assert rollout.metadata["verifiers"]["stop_condition"] == trace.stop_condition
        assert rollout.metadata["verifiers"]["tool_defs"][0]["name"] == "calc"
        assert rollout.metadata["answer"] == trace.task.data.answer
        assert rollout.metadata["info"] == {"level": trace.task.data.level}
    assert max(t.reward for t in traces) == 1.5  # above 1: never a rubric total
    assert not RolloutScore.objects.filter(rollout__project=project).exists()
    scores = dict(CriterionScore.objects.filter(rollout__project=project, rubric_version=version,
                                                judge_fingerprint=VERIFIERS_JUDGE).values_list("rollout_id", "score"))
    assert [scores[r.pk] for r in rollouts] == [t.rewards["correct"].score for t in traces]
    assert [r.finish_reason for r in rollouts] == ["stop", "stop", "stop", "length"]
    assert [r.error for r in rollouts] == ["", "ToolError: calc timed out", "", ""]


@pytest.mark.django_db
def test_run_tasks_missing_from_the_task_become_examples_once(run_dir, make_member):
    _, project = make_member("editor")
    task = TaskFactory(project=project, name="arith-env")  # found by the run's env id
    for _ in range(2):
        result = dataset_import_path(path=run_dir, project=project, kind="verifiers")
    assert result.examples == 0
    examples = {e.external_id: e for e in Example.objects.filter(task=task)}
    assert set(examples) == {"sum-1", "prod-1"}
    assert examples["sum-1"].prompt == "What is 2 + 3?" and examples["sum-1"].answer == "5"
    assert examples["sum-1"].messages[0] == {"role": "system", "content": "Use the calculator."}
    assert Rollout.objects.filter(project=project).count() == 8


@pytest.mark.django_db
def test_what_is_not_a_verifiers_run_is_refused_and_nothing_is_created(run_dir, make_member):
    user, project, task, version, *_ = _project(make_member)
    lines = (run_dir / "traces.jsonl").read_text().splitlines()
    cases = [
        (b'{"a": 1}\n' * 20, r"^line 1: not a verifiers run"),
        ("\n".join([*lines, '{"task": {"data": {}}}']).encode(), r"^traces.jsonl line 5: not a verifiers run"),
        ("\n".join([*lines[:3], lines[3].replace('"parent":3', '"parent":9')]).encode(),
         r"^traces.jsonl line 4: trace 0: node 4 has parent 9"),
        ("\n".join([*lines[:3], lines[3].replace('"weight":0.5', '"weight":"half"')]).encode(),
         r"^traces.jsonl line 4: trace 0: reward 'format' weight must be a number"),
        (_zip_folder(run_dir / "configs"), r"^Not a verifiers run: no traces.jsonl"),
        (b"", "not a verifiers run"),
    ]
    for data, message in cases:
        with pytest.raises(ApplicationError, match=message):
            verifiers_import(project=project, results=io.BytesIO(data), task=task, rubric_version=version)
    with pytest.raises(ApplicationError, match=r"eval.json is not valid JSON"):
        verifiers_import(project=project, results=io.BytesIO("\n".join(lines).encode()), task=task,
                         metadata=io.BytesIO(b"{nope"))
    assert not Rollout.objects.filter(project=project).exists()
    assert Example.objects.filter(task=task).count() == 2

    api = APIClient()
    api.force_authenticate(user)
    url = f"/api/v1/projects/{project.pk}/rollouts/import/"
    refused = api.post(url, {"kind": "verifiers", "task": task.pk,
                             "file": SimpleUploadedFile("traces.jsonl", b'{"a": 1}\n' * 20)}, format="multipart")
    assert refused.status_code == 400 and "not a verifiers run" in refused.json()["detail"]
    assert not Rollout.objects.filter(project=project).exists()
    # traces.jsonl alone (no config) is a whole run: everything is in the episodes.
    alone = api.post(url, {"kind": "verifiers", "task": task.pk, "rubric_version": version.pk,
                           "file": SimpleUploadedFile("traces.jsonl", (run_dir / "traces.jsonl").read_bytes())},
                     format="multipart")
    assert alone.status_code == 201, alone.content
    body = alone.json()
    assert body.pop("import_id") > 0
    assert body == {"imported": 4, "scores": 4, "labels": 0, "pairwise_labels": 0, "examples": 0}
    assert all(r.completion and r.prompt_messages for r in Rollout.objects.filter(project=project))


@pytest.mark.django_db
def test_our_04_export_reads_back_with_verifiers(scored, tmp_path):
    from verifiers.v1.cli.output import saved_config_path
    from verifiers.v1.configs.cli.eval import EvalConfig

    path, _ = export_file(scored["project"], "verifiers", "jsonl", scored["version"])
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["configs/resolved/eval.json", "traces.jsonl"]
        archive.extractall(tmp_path / "run")
    run = tmp_path / "run"
    config = EvalConfig.model_validate(json.loads(saved_config_path(run).read_text()))
    assert config.model == "bundled" and config.num_rollouts == 3
    episodes = read_run(run)
    assert len(episodes) == 9
    by_id = {r.pk: r for r in scored["rollouts"]}
    expected = sorted(r for rewards in GROUPS.values() for r in rewards)
    assert sorted(e.traces[0].reward for e in episodes) == pytest.approx(expected)
    for episode in episodes:
        trace = episode.traces[0]
        rollout = by_id[trace.info["rubricon"]["rollout_id"]]
        assert [m.model_dump(exclude_none=True) for m in trace.messages] == rollout.messages
        assert trace.last_reply == rollout.completion.strip()
        assert trace.task.data.id == rollout.example.external_id
        assert trace.task.data.prompt == rollout.example.prompt
        assert set(trace.metrics) == {"correct", "polite"}
        assert trace.num_output_tokens == rollout.completion_tokens
        assert episode.group.id == rollout.group_key


class _TimeSpan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float
    end: float


class _TimeSpans(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spans: list[_TimeSpan]


class _RolloutTiming(BaseModel):
    """verifiers 0.3.1 `verifiers.legacy.types.RolloutTiming` (its computed fields aside)."""

    model_config = ConfigDict(extra="forbid")
    start_time: float
    setup: _TimeSpan
    generation: _TimeSpan
    scoring: _TimeSpan
    model: _TimeSpans
    env: _TimeSpans


# verifiers 0.3.1 RolloutOutput's required fields and GenerateMetadata's keys, with their types.
ROLLOUT_OUTPUT = {"example_id": int, "prompt": list, "completion": list, "reward": float, "timing": dict,
                  "is_completed": bool, "is_truncated": bool, "metrics": dict}
GENERATE_METADATA = {"env_id": str, "env_args": dict, "model": str, "base_url": str, "num_examples": int,
                     "rollouts_per_example": int, "sampling_args": dict, "time": float, "avg_reward": float,
                     "avg_metrics": dict, "avg_error": float, "pass_at_k": dict, "pass_all_k": dict,
                     "version_info": dict}


@pytest.mark.django_db
def test_our_03_export_meets_what_verifiers_03_load_outputs_reads(scored):
    path, rows = export_file(scored["project"], "verifiers_03", "jsonl", scored["version"])
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
    assert len(rows) == 9
    for row in rows:
        for name, kind in ROLLOUT_OUTPUT.items():
            assert isinstance(row[name], kind) and not (kind is int and isinstance(row[name], bool)), name
        _RolloutTiming.model_validate(row["timing"])
        assert all(m.keys() >= {"role", "content"} for m in row["prompt"] + row["completion"])
        assert set(row["metrics"]) == {"correct", "polite"}
    assert sorted({r["example_id"] for r in rows}) == [0, 1, 2]
    for name, kind in GENERATE_METADATA.items():
        assert isinstance(metadata[name], kind), name
    assert metadata["avg_metrics"]["correct"] == pytest.approx(sum(r["metrics"]["correct"] for r in rows) / 9)
