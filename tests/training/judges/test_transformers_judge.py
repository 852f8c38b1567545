"""The local transformers judge: a tiny random Llama built from the bundled model's config (fast), and the real
bundled SmolLM2 (slow)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from training.judges.base import CachedJudge, InMemoryJudgeCache
from training.judges.transformers_judge import TransformersJudge
from training.rubrics import validate_spec
from training.rubrics.engine import RubricEngine
from training.rubrics.types import Rollout

REPO = Path(__file__).resolve().parents[3]
SPEC = {
    "criteria": [
        {
            "key": "correct",
            "title": "Correct",
            "kind": "judge",
            "use_reference": True,
            "question": "Is the completion's final answer the same as the reference answer?",
            "choices": [{"label": "no"}, {"label": "yes"}],
        },
        {"key": "format", "title": "Tags", "kind": "format", "check": "answer_tag", "weight": 0.25},
    ]
}


@pytest.fixture(scope="module")
def bundled_dir() -> Path:
    from training.models import ensure_bundled_model

    return ensure_bundled_model(REPO / "var" / "models")


def tiny_model(bundled_dir: Path) -> tuple[object, object]:
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    config = AutoConfig.from_pretrained(bundled_dir)
    config.update(
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
        }
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), AutoTokenizer.from_pretrained(bundled_dir)


@pytest.fixture(scope="module")
def tiny(bundled_dir: Path) -> tuple[object, object]:
    return tiny_model(bundled_dir)


def judge_for(tiny: tuple[object, object], mode: str) -> TransformersJudge:
    model, tokenizer = tiny
    return TransformersJudge(
        model=model, tokenizer=tokenizer, name="tiny-llama", max_new_tokens=12, verdict_mode=mode
    )


def test_generated_output_is_unscored_with_reason_never_a_crash(tiny: tuple[object, object]) -> None:
    engine = RubricEngine(validate_spec(SPEC), judge=judge_for(tiny, "generate"))
    result = asyncio.run(engine.ascore(Rollout("<answer>4</answer>", prompt="2+2?", reference="4")))
    correct = result.criteria["correct"]
    assert correct.raw_response is not None and correct.completion_tokens > 0 and correct.prompt_tokens > 100
    # Random weights produce noise: unscored with the reason kept, and the rest of the rubric still scored.
    assert correct.score is None or correct.score in (0.0, 1.0)
    if correct.score is None:
        assert correct.error and result.total is None
    assert result.criteria["format"].score == 1.0
    assert engine.judge_fingerprint and engine.judge_fingerprint.startswith("transformers:tiny-llama|")


def test_choice_mode_always_answers_with_a_label(tiny: tuple[object, object]) -> None:
    judge = judge_for(tiny, "choices")
    assert judge.supports_structured_output
    engine = RubricEngine(validate_spec(SPEC), judge=judge)
    result = asyncio.run(engine.ascore(Rollout("<answer>4</answer>", prompt="2+2?", reference="4")))
    correct = result.criteria["correct"]
    assert correct.score in (0.0, 1.0) and correct.choice in ("no", "yes")
    assert correct.rationale and correct.rationale.startswith("label log-probabilities: no=")
    assert result.total is not None
    assert judge.fingerprint != judge_for(tiny, "generate").fingerprint


CHOICE_SPEC = {"criteria": [
    {"key": "correct", "title": "Correct", "kind": "judge", "question": "Is the answer right?",
     "choices": [{"label": "no"}, {"label": "partly right"}, {"label": "yes entirely"}]},
    {"key": "polite", "title": "Polite", "kind": "judge", "question": "Is it polite?",
     "choices": [{"label": "rude"}, {"label": "polite"}]},
    {"key": "short", "title": "Short", "kind": "judge", "question": "Is it short?",
     "choices": [{"label": "far too long"}, {"label": "short"}]},
]}


def choose_and_check(judge: TransformersJudge, tiny: tuple[object, object], criteria: list, rollout: Rollout) -> int:
    """Ask `judge` for the criteria's labels on `rollout` and check every label's log-probability (shown in the
    rationale) against a separate full forward pass over prompt + label; the tokens the model was given."""
    import torch

    from training.rubrics.prompts import build_judge_prompt

    model, tokenizer = tiny
    prompt = build_judge_prompt(criteria, rollout)
    seen: list[int] = []
    hook = model.register_forward_pre_hook(lambda _, args, kwargs: seen.append(kwargs["input_ids"].numel()),
                                           with_kwargs=True)
    try:
        answer = judge._choose(prompt.messages, prompt.json_schema)
    finally:
        hook.remove()
    assert answer is not None
    verdicts = json.loads(answer.text)["verdicts"]
    assert [v["key"] for v in verdicts] == [c.key for c in criteria]
    text = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
    billed = 0
    for criterion, verdict in zip(criteria, verdicts, strict=True):
        prefix = tokenizer(f"{text}Criterion `{criterion.key}` verdict:", add_special_tokens=False)["input_ids"]
        billed += len(prefix)
        expected = {}
        for choice in criterion.choices:
            ids = tokenizer(f" {choice.label}", add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                logprobs = torch.log_softmax(model(input_ids=torch.tensor([prefix + ids])).logits.float(), dim=-1)
            expected[choice.label] = sum(float(logprobs[0, len(prefix) - 1 + i, t]) for i, t in enumerate(ids))
        shown = dict(part.rsplit("=", 1) for part in verdict["rationale"].removeprefix("label log-probabilities: ")
                     .split(", "))
        assert {label: float(value) for label, value in shown.items()} == pytest.approx(
            {label: round(value, 2) for label, value in expected.items()}, abs=0.011)
        assert verdict["verdict"] == max(expected, key=expected.__getitem__)
    assert answer.prompt_tokens == billed  # billed per criterion, as the dry run's token estimate counts it
    return sum(seen)


def test_choice_mode_runs_the_prompt_once_and_equals_a_full_pass_per_label(tiny: tuple[object, object]) -> None:
    """Three criteria, labels of several tokens: every label's log-probability equals the one a separate full forward
    pass over prompt + label gives, and the model sees the prompt once (not once per label and criterion)."""
    model, tokenizer = tiny
    criteria = list(validate_spec(CHOICE_SPEC).judge_criteria)
    rollout = Rollout("<answer>4</answer>", prompt="2+2?")
    given = choose_and_check(judge_for(tiny, "choices"), tiny, criteria, rollout)
    from training.rubrics.prompts import build_judge_prompt

    prompt = build_judge_prompt(criteria, rollout)
    text = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
    length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    # The prompt once, then a few tokens per criterion and label: far below one pass per label (~7 prompts).
    assert given < length + 60, (given, length)


def test_choice_mode_runs_only_what_a_call_does_not_share_with_the_last(tiny: tuple[object, object]) -> None:
    """One criterion per call, as rubrics ask by default: the second criterion of a rollout runs only its question
    (the system prompt and the rollout are the last call's); another rollout still shares the system prompt."""
    from training.rubrics.prompts import build_judge_prompt

    _, tokenizer = tiny
    judge = judge_for(tiny, "choices")
    correct, polite, _ = validate_spec(CHOICE_SPEC).judge_criteria
    first = Rollout("<answer>4</answer> " + "I counted twice to be sure. " * 20, prompt="What is 2+2?")
    other = Rollout("<answer>5</answer>", prompt="What is 2+3?")

    def tokens(criterion, rollout) -> int:
        prompt = build_judge_prompt([criterion], rollout)
        text = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    alone = choose_and_check(judge, tiny, [correct], first)
    assert alone >= tokens(correct, first)  # nothing to share yet
    again = choose_and_check(judge, tiny, [polite], first)
    assert again < tokens(polite, first) // 3, (again, tokens(polite, first))
    next_rollout = choose_and_check(judge, tiny, [correct], other)
    assert next_rollout < tokens(correct, other) - 50  # the system prompt and the template's start are shared
    assert choose_and_check(judge, tiny, [correct], other) <= 10  # the same call again: only the label rows


def test_a_sliding_window_model_reuses_no_prompt_it_cannot_roll_back(bundled_dir: Path) -> None:
    """A sliding-window cache keeps only the last tokens of the window, so dropping tokens from its end does not give
    the shorter prompt's cache: the next call must run its prompt in full, and still equal a full pass."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(bundled_dir)
    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=16)).eval()
    judge = TransformersJudge(model=model, tokenizer=tokenizer, name="tiny-mistral", verdict_mode="choices")
    correct, polite, _ = validate_spec(CHOICE_SPEC).judge_criteria
    rollout = Rollout("<answer>4</answer>", prompt="What is 2+2?")
    choose_and_check(judge, (model, tokenizer), [correct], rollout)
    choose_and_check(judge, (model, tokenizer), [polite], rollout)  # shares all but the question with the first


def test_choice_mode_falls_back_to_generation_for_scales(tiny: tuple[object, object]) -> None:
    spec = {
        "criteria": [
            {
                "key": "clear",
                "title": "Clear",
                "kind": "judge",
                "question": "How clear?",
                "scale": {"min": 1, "max": 5},
            }
        ]
    }
    result = asyncio.run(
        RubricEngine(validate_spec(spec), judge=judge_for(tiny, "choices")).ascore(Rollout("x"))
    )
    assert result.criteria["clear"].completion_tokens > 0  # generated, not chosen


def test_local_judge_is_cached_and_deterministic(tiny: tuple[object, object]) -> None:
    judge = CachedJudge(judge_for(tiny, "generate"), InMemoryJudgeCache())
    engine = RubricEngine(validate_spec(SPEC), judge=judge)
    rollouts = [Rollout("<answer>4</answer>", prompt="2+2?", reference="4")] * 2 + [
        Rollout("<answer>5</answer>", prompt="2+2?", reference="4")
    ]
    first = asyncio.run(engine.ascore_many(rollouts))
    assert judge.calls == 2
    second = asyncio.run(engine.ascore_many(rollouts))
    # Zero generations the second time for verdicts that parsed; an off-format answer (a tiny random model writes
    # many) is not a verdict, so it is not cached and is asked again.
    unparsed = {r.completion for r, s in zip(rollouts, first, strict=True) if s.criteria["correct"].score is None}
    assert judge.calls == 2 + len(unparsed)
    assert [r.criteria["correct"].raw_response for r in first] == [
        r.criteria["correct"].raw_response for r in second
    ]


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="model_path"):
        TransformersJudge()
    with pytest.raises(ValueError, match="verdict_mode"):
        TransformersJudge("x", verdict_mode="vibes")


@pytest.mark.slow
def test_bundled_smollm2_judge(bundled_dir: Path) -> None:
    rollout = Rollout("<answer>4</answer>", prompt="What is 2+2?", reference="4")
    choosing = RubricEngine(validate_spec(SPEC), judge=TransformersJudge(bundled_dir))
    chosen = asyncio.run(choosing.ascore(rollout)).criteria["correct"]
    # Choice mode: the 135M model always picks a label (how well it judges is what agreement stats are for).
    assert chosen.score in (0.0, 1.0) and chosen.raw_response
    generating = RubricEngine(
        validate_spec(SPEC), judge=TransformersJudge(bundled_dir, max_new_tokens=24, verdict_mode="generate")
    )
    generated = asyncio.run(generating.ascore(rollout)).criteria["correct"]
    assert generated.completion_tokens > 0
    assert generated.score is not None or generated.error  # free text from a 135M model is often unparseable
