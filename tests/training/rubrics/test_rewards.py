"""TRL reward functions built from a rubric equal the engine's scores on the same completions."""

from __future__ import annotations

import asyncio
import inspect
import math
import pickle
from typing import Any

import pytest

from tests.support.judge_server import StubChatServer
from training.judges.openai_judge import OpenAIJudge
from training.llm_client import OpenAICompatibleClient
from training.rubrics import validate_spec
from training.rubrics.engine import RubricEngine
from training.rubrics.rewards import TOTAL_NAME, build_reward_functions, rollouts_from_trl

FIXTURES = "tests.training.rubrics.reward_fixtures"
PROGRAMMATIC = {
    "criteria": [
        {
            "key": "correct",
            "title": "Correct",
            "kind": "match",
            "weight": 1.0,
            "extract": "answer_tag",
            "mode": "numeric",
        },
        {"key": "format", "title": "Format", "kind": "format", "weight": 0.25, "check": "answer_tag"},
        {
            "key": "short",
            "title": "Short",
            "kind": "length",
            "unit": "tokens",
            "max": 6,
            "slack": 6,
            "weight": 0.5,
        },
        {
            "key": "echo",
            "title": "Echo",
            "kind": "python",
            "function": f"{FIXTURES}.mentions_reference",
            "weight": 0,
        },
    ]
}
PROMPTS = ["What is 2+2?"] * 3 + ["What is 3*3?"] * 3
COMPLETIONS = [
    "<answer>4</answer>",
    "4",
    "<answer>5</answer> and more words here",
    "<answer>9</answer>",
    "<answer>9</answer><answer>9</answer>",
    "nine",
]
ANSWERS = ["4"] * 3 + ["9"] * 3
COMPLETION_IDS = [list(range(len(c.split()) * 2)) for c in COMPLETIONS]


def trl_kwargs(**extra: Any) -> dict[str, Any]:
    """What GRPOTrainer 1.16 passes besides prompts/completions (see trl/trainer/grpo_trainer.py)."""
    return {
        "completion_ids": COMPLETION_IDS,
        "answer": ANSWERS,
        "trainer_state": object(),
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
        **extra,
    }


def call(func: Any, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
    # TRL awaits async reward functions on its own loop and calls the others directly.
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(type(func).__call__):
        return asyncio.run(func(prompts=prompts, completions=completions, **kwargs))
    return func(prompts=prompts, completions=completions, **kwargs)


def weighted_sum(rewards: Any, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
    columns = [call(f, prompts, completions, **kwargs) for f in rewards.funcs]
    # TRL: nansum over functions of reward * weight.
    return [
        sum(0.0 if v is None else v * w for v, w in zip(row, rewards.weights, strict=True))
        for row in zip(*columns, strict=True)
    ]


def test_per_criterion_rewards_equal_engine_scores() -> None:
    spec = validate_spec(PROGRAMMATIC, python_allowlist=[f"{FIXTURES}.*"])
    rewards = build_reward_functions(spec, python_allowlist=[f"{FIXTURES}.*"])
    assert rewards.names == ["correct", "format", "short", "echo"]
    assert rewards.weights == pytest.approx([1 / 1.75, 0.25 / 1.75, 0.5 / 1.75, 0.0])
    engine = RubricEngine(spec, python_allowlist=[f"{FIXTURES}.*"])
    rollouts = rollouts_from_trl(PROMPTS, COMPLETIONS, trl_kwargs())
    expected = [engine.score(r) for r in rollouts]
    for func in rewards.funcs:
        assert call(func, PROMPTS, COMPLETIONS, **trl_kwargs()) == [
            e.criteria[func.__name__].score for e in expected
        ]
    totals = weighted_sum(rewards, PROMPTS, COMPLETIONS, **trl_kwargs())
    assert totals == pytest.approx([e.total for e in expected])
    assert len(set(totals)) > 2  # the rubric separates completions of a group


def test_conversational_rows() -> None:
    spec = validate_spec(PROGRAMMATIC, python_allowlist=[f"{FIXTURES}.*"])
    rewards = build_reward_functions(spec, python_allowlist=[f"{FIXTURES}.*"])
    prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    completions = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
    assert weighted_sum(rewards, prompts, completions, **trl_kwargs()) == pytest.approx(
        weighted_sum(rewards, PROMPTS, COMPLETIONS, **trl_kwargs())
    )


def test_gates_use_a_total_reward_and_log_criteria_at_weight_zero() -> None:
    spec = validate_spec(
        {**PROGRAMMATIC, "gates": [{"criterion": "correct", "below": 1.0}]},
        python_allowlist=[f"{FIXTURES}.*"],
    )
    rewards = build_reward_functions(spec, python_allowlist=[f"{FIXTURES}.*"])
    assert rewards.names[0] == TOTAL_NAME and rewards.weights == [1.0, 0.0, 0.0, 0.0, 0.0]
    engine = RubricEngine(spec, python_allowlist=[f"{FIXTURES}.*"])
    expected = [engine.score(r).total for r in rollouts_from_trl(PROMPTS, COMPLETIONS, trl_kwargs())]
    assert weighted_sum(rewards, PROMPTS, COMPLETIONS, **trl_kwargs()) == pytest.approx(expected)
    assert expected[2] == 0.0  # wrong answer gated to 0 despite its format score


def test_reference_column_fallbacks_and_missing_reference() -> None:
    spec = validate_spec({"criteria": PROGRAMMATIC["criteria"][:1]})
    func = build_reward_functions(spec).funcs[0]
    assert func(prompts=["p"], completions=["<answer>4</answer>"], solution=["4"]) == [1.0]
    assert build_reward_functions(spec, reference_column="gold").funcs[0](
        prompts=["p"], completions=["<answer>4</answer>"], gold=[4]
    ) == [1.0]
    assert func(prompts=["p"], completions=["<answer>4</answer>"]) == [None]  # TRL turns None into NaN


def test_reward_functions_pickle_and_look_like_trl_expects() -> None:
    spec = validate_spec(PROGRAMMATIC, python_allowlist=[f"{FIXTURES}.*"])
    rewards = build_reward_functions(spec, python_allowlist=[f"{FIXTURES}.*"])
    clone = pickle.loads(pickle.dumps(rewards.funcs[0]))
    assert clone.__name__ == "correct"
    assert (
        clone(
            prompts=PROMPTS,
            completions=COMPLETIONS,
            **trl_kwargs(trainer_state=None, log_extra=None, log_metric=None),
        )[0]
        == 1.0
    )


JUDGED = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "extract": "answer_tag", "mode": "numeric"},
        {
            "key": "helpful",
            "title": "Helpful",
            "kind": "judge",
            "question": "Is it helpful?",
            "weight": 0.5,
            "choices": [{"label": "no"}, {"label": "partly"}, {"label": "yes"}],
        },
        {
            "key": "clear",
            "title": "Clear",
            "kind": "judge",
            "question": "Is it clear?",
            "weight": 0.5,
            "scale": {"min": 0, "max": 10},
        },
    ],
}


def graded(body: dict[str, Any], index: int) -> str:
    """Deterministic judge: verdict depends on the completion, so rollouts differ."""
    import json
    import re

    text = body["messages"][-1]["content"]
    groups = re.findall(r'<rollout id="(\d+)">\n(.*?)\n</rollout>', text, re.S)
    if not groups:
        groups = [("1", re.search(r"<completion>\n(.*?)\n</completion>", text, re.S).group(1))]  # type: ignore[union-attr]
    keys = re.findall(r"Criterion `(\w+)`", text)
    verdicts = []
    for rollout, completion in groups:
        for key in keys:
            verdict: Any = (
                ["no", "partly", "yes"][len(completion) % 3] if key == "helpful" else len(completion) % 11
            )
            verdicts.append({"rollout": int(rollout), "key": key, "rationale": "r", "verdict": verdict})
    return json.dumps({"verdicts": verdicts})


@pytest.mark.parametrize("options", [{}, {"max_criteria_per_call": 2}, {"group_relative": True}])
def test_judge_rewards_are_async_and_equal_engine_scores(options: dict[str, Any]) -> None:
    spec = validate_spec({**JUDGED, "judge": options})
    with StubChatServer(graded) as server:
        client = OpenAICompatibleClient(server.base_url, "stub-judge")
        rewards = build_reward_functions(spec, judge=OpenAIJudge(client))
        kinds = [inspect.iscoroutinefunction(type(f).__call__) for f in rewards.funcs]
        assert kinds == [False, True, True]
        got = weighted_sum(rewards, PROMPTS, COMPLETIONS, **trl_kwargs())
        calls_for_rewards = server.stats["requests"]
        expected = asyncio.run(
            rewards.engine.ascore_many(rollouts_from_trl(PROMPTS, COMPLETIONS, trl_kwargs()))
        )
        assert server.stats["requests"] == calls_for_rewards  # same prompts → served from the cache
    assert got == pytest.approx([e.total for e in expected])
    assert all(e.total is not None and not math.isnan(e.total) for e in expected)
    per_call = {(): 12, ("max_criteria_per_call",): 6, ("group_relative",): 4}[tuple(options)]
    assert calls_for_rewards == per_call


def test_judge_rubric_without_judge_is_refused() -> None:
    with pytest.raises(ValueError, match="pass judge"):
        build_reward_functions(validate_spec(JUDGED))


@pytest.mark.slow
def test_trl_sees_one_named_reward_per_criterion() -> None:
    from trl.trainer.utils import get_callable_name, is_async_callable

    spec = validate_spec(JUDGED)
    with StubChatServer() as server:
        rewards = build_reward_functions(
            spec, judge=OpenAIJudge(OpenAICompatibleClient(server.base_url, "stub"))
        )
    assert [get_callable_name(f) for f in rewards.funcs] == ["correct", "helpful", "clear"]
    assert [is_async_callable(f) for f in rewards.funcs] == [False, True, True]
