"""Programmatic criteria: every kind with edge cases, and the reference answer scoring full marks per kind."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.training.specs import arithmetic_spec
from training.rubrics import validate_spec
from training.rubrics.engine import RubricEngine, RubricError, length_score, score_programmatic
from training.rubrics.extract import check_format, extract_answer, parse_number
from training.rubrics.types import Rollout

FIXTURES = "tests.training.rubrics.reward_fixtures"


def criterion(**fields: Any) -> Any:
    data = {"key": "c", "title": "C", **fields}
    return validate_spec({"criteria": [data]}, python_allowlist=[f"{FIXTURES}.*"]).criteria[0]


def score(c: Any, completion: str, reference: str | None = None, **rollout: Any) -> tuple[float | None, str]:
    result = score_programmatic(
        c,
        Rollout(completion, reference=reference, **rollout),
        python_allowlist=[f"{FIXTURES}.*"],
        count_tokens=lambda text: len(text.split()),
    )
    return result.score, result.reason


# --- the reference answer scores full marks, one case per kind ---------------------------------------------------
REFERENCE = "42"


@pytest.mark.parametrize(
    ("fields", "completion"),
    [
        ({"kind": "match", "mode": "exact"}, "<answer>42</answer>"),
        ({"kind": "match", "mode": "normalized", "extract": "boxed"}, "so \\boxed{42}"),
        ({"kind": "match", "mode": "contains", "extract": "full"}, "42"),
        ({"kind": "match", "mode": "regex", "pattern": r"^\d+$"}, "<answer>42</answer>"),
        ({"kind": "match", "mode": "numeric", "extract": "last_number"}, "42"),
        ({"kind": "match", "mode": "math", "extract": "full"}, "42"),
        ({"kind": "match", "mode": "exact", "extract": "json_block"}, "```json\n42\n```"),
        ({"kind": "format", "check": "answer_tag"}, "<answer>42</answer>"),
        ({"kind": "format", "check": "think_answer_tags"}, "<think>6*7</think><answer>42</answer>"),
        ({"kind": "format", "check": "boxed"}, "\\boxed{42}"),
        ({"kind": "format", "check": "last_number"}, "42"),
        ({"kind": "format", "check": "json_block"}, '{"answer": 42}'),
        ({"kind": "json", "extract": "full", "schema": {"type": "integer", "const": 42}}, "42"),
        ({"kind": "length", "min": 1, "max": 10}, "42"),
        ({"kind": "length", "unit": "tokens", "max": 3}, "42"),
        ({"kind": "python", "function": f"{FIXTURES}.mentions_reference"}, "42"),
    ],
)
def test_reference_answer_scores_full_marks(fields: dict[str, Any], completion: str) -> None:
    value, reason = score(criterion(**fields), completion, REFERENCE)
    assert value == 1.0, reason


# --- match -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "completion", "reference", "expected"),
    [
        ({"mode": "exact"}, "<answer> 42 </answer>", "42", 1.0),
        ({"mode": "exact"}, "<answer>41</answer><answer>42</answer>", "42", 1.0),  # last block wins
        ({"mode": "exact"}, "<answer>Paris</answer>", "paris", 0.0),
        ({"mode": "normalized"}, "<answer>  The   Paris. </answer>", "the paris", 1.0),
        ({"mode": "normalized"}, "<answer>$\\text{Paris}$</answer>", "paris", 1.0),
        ({"mode": "contains"}, "<answer>It is Paris, France</answer>", "paris", 1.0),
        ({"mode": "contains"}, "<answer>London</answer>", "paris", 0.0),
        ({"mode": "numeric"}, "<answer>1,234</answer>", "1234", 1.0),
        ({"mode": "numeric"}, "<answer>$5.00</answer>", "5", 1.0),
        ({"mode": "numeric"}, "<answer>3/4</answer>", "0.75", 1.0),
        ({"mode": "numeric"}, "<answer>50%</answer>", "50", 1.0),
        ({"mode": "numeric"}, "<answer>about 18 apples</answer>", "18", 1.0),
        ({"mode": "numeric"}, "<answer>3.14</answer>", "3.14159", 0.0),
        ({"mode": "numeric", "tolerance": 0.01}, "<answer>3.14</answer>", "3.14159", 1.0),
        (
            {"mode": "numeric"},
            "<answer>0.1</answer>",
            str(0.1 + 0.2 - 0.2),
            1.0,
        ),  # float noise is not an error
        ({"mode": "numeric"}, "<answer>many</answer>", "3", 0.0),
        (
            {"mode": "numeric", "value": 7},
            "<answer>7</answer>",
            "99",
            1.0,
        ),  # literal value beats the reference
        ({"mode": "math", "extract": "boxed"}, "\\boxed{\\frac{1}{2}}", "0.5", 1.0),
        ({"mode": "math", "extract": "boxed"}, "\\boxed{\\sqrt{4}}", "2", 1.0),
        ({"mode": "math", "extract": "answer_tag"}, "<answer>2x+2</answer>", "2(x+1)", 1.0),
        ({"mode": "math", "extract": "boxed"}, "\\boxed{3}", "2", 0.0),
        (
            {"mode": "regex", "pattern": "^(yes|no)$", "extract": "full"},
            "yes",
            None,
            1.0,
        ),  # no reference needed
        ({"mode": "regex", "pattern": "^(yes|no)$", "extract": "full"}, "maybe", None, 0.0),
    ],
)
def test_match_modes(fields: dict[str, Any], completion: str, reference: str | None, expected: float) -> None:
    value, reason = score(criterion(kind="match", **fields), completion, reference)
    assert value == expected, reason


@pytest.mark.parametrize("extract", ["answer_tag", "boxed", "last_number", "json_block", "full"])
def test_extraction_failure_scores_zero_with_reason(extract: str) -> None:
    value, reason = score(criterion(kind="match", extract=extract, mode="exact"), "   ", "42")
    assert value == 0.0
    assert reason.startswith("extraction failed")


def test_missing_reference_is_unscored_not_wrong() -> None:
    result = score_programmatic(criterion(kind="match", mode="exact"), Rollout("<answer>4</answer>"))
    assert result.score is None and result.error == "missing reference answer"


def test_catastrophic_regex_runs_in_linear_time() -> None:
    c = criterion(kind="match", mode="regex", pattern="(a+)+$", extract="full")
    started = time.perf_counter()
    value, _ = score(c, "a" * 200_000 + "!")
    assert value == 0.0
    assert time.perf_counter() - started < 1.0


def test_math_mode_works_off_the_main_thread() -> None:
    # TRL runs async rewards on a daemon thread, where math-verify's SIGALRM timeouts are unavailable.
    out: list[float | None] = []
    thread = threading.Thread(
        target=lambda: out.append(
            score(criterion(kind="match", mode="math", extract="boxed"), "\\boxed{1/2}", "0.5")[0]
        )
    )
    thread.start()
    thread.join(30)
    assert out == [1.0]


def test_parse_number_edge_cases() -> None:
    assert parse_number("-2e3") == -2000
    assert parse_number("\\$12") == 12
    assert parse_number("1/0") is None or parse_number("1/0") == 0.0
    assert parse_number("none") is None


# --- format ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("check", "completion", "ok"),
    [
        ("think_answer_tags", "<think>a</think>\n<answer>b</answer>", True),
        ("think_answer_tags", "<THINK>a</THINK><ANSWER>b</ANSWER>", True),
        ("think_answer_tags", "<answer>b</answer><think>a</think>", False),
        ("think_answer_tags", "<think>a</think><think>c</think><answer>b</answer>", False),
        ("think_answer_tags", "<think>a</think><answer> </answer>", False),
        ("think_answer_tags", "<think>a<answer>b</answer>", False),
        ("answer_tag", "<answer>x</answer>", True),
        ("answer_tag", "<answer>x</answer><answer>y</answer>", False),
        ("answer_tag", "<answer></answer>", False),
        ("answer_tag", "<answer>unclosed", False),
        ("boxed", "\\boxed{\\frac{a}{b}}", True),
        ("boxed", "\\boxed{}", False),
        ("boxed", "\\boxed{unbalanced", False),
        ("last_number", "no digits", False),
        ("json_block", '```json\n{"a": 1}\n```', True),
        ("json_block", "{not json}", False),
    ],
)
def test_format_checks(check: str, completion: str, ok: bool) -> None:
    assert check_format(completion, check)[0] is ok
    value, reason = score(criterion(kind="format", check=check), completion)
    assert value == float(ok) and reason


def test_boxed_extraction_balances_nested_braces() -> None:
    assert (
        extract_answer("x \\boxed{1} then \\boxed{\\frac{1}{\\sqrt{2}}}", "boxed").value
        == "\\frac{1}{\\sqrt{2}}"
    )


# --- json --------------------------------------------------------------------------------------------------------
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}


@pytest.mark.parametrize(
    ("extract", "completion", "expected", "fragment"),
    [
        ("json_block", 'Here:\n```json\n{"name": "Ada", "age": 36}\n```', 1.0, "matching"),
        ("json_block", 'Sure! {"name": "Ada"} hope it helps', 1.0, "matching"),
        ("json_block", '{"age": 36}', 0.0, "'name' is a required property"),
        ("json_block", '{"name": "Ada", "age": "old"}', 0.0, "at age"),
        ("json_block", "no json here", 0.0, "no parseable JSON"),
        ("full", '{"name": "Ada"}', 1.0, "matching"),
        ("full", 'Here: {"name": "Ada"}', 0.0, "not valid JSON"),
        ("full", '{"name": "Ada"', 0.0, "not valid JSON"),
    ],
)
def test_json_criterion(extract: str, completion: str, expected: float, fragment: str) -> None:
    value, reason = score(criterion(kind="json", extract=extract, schema=SCHEMA), completion)
    assert value == expected
    assert fragment in reason


def test_json_without_schema_only_needs_valid_json() -> None:
    assert score(criterion(kind="json", extract="full"), "[1, 2]")[0] == 1.0


# --- length ------------------------------------------------------------------------------------------------------
def test_length_curve() -> None:
    assert length_score(50, 10, 100, 0) == 1.0
    assert length_score(101, 10, 100, 0) == 0.0
    assert length_score(150, 10, 100, 100) == 0.5
    assert length_score(5, 10, None, 10) == 0.5
    assert length_score(10**6, None, 100, 100) == 0.0


def test_length_units() -> None:
    chars = criterion(kind="length", max=5, slack=5)
    assert score(chars, "1234567")[0] == pytest.approx(0.6)
    tokens = criterion(kind="length", unit="tokens", max=2, slack=2)
    assert score(tokens, "one two three")[0] == pytest.approx(0.5)  # counted by count_tokens
    assert score(tokens, "one", completion_tokens=4)[0] == 0.0  # the rollout's own token count wins
    no_tokenizer = score_programmatic(tokens, Rollout("a b c"))
    assert no_tokenizer.score is None and no_tokenizer.error == "no tokenizer"


# --- python ------------------------------------------------------------------------------------------------------
def test_python_criteria() -> None:
    assert score(criterion(kind="python", function=f"{FIXTURES}.mentions_reference"), "x", "y") == (
        0.0,
        "reference missing",
    )
    value, reason = score(criterion(kind="python", function=f"{FIXTURES}.out_of_range"), "x")
    assert value == 1.0 and "clipped" in reason
    broken = score_programmatic(
        criterion(kind="python", function=f"{FIXTURES}.broken"),
        Rollout("x"),
        python_allowlist=[f"{FIXTURES}.*"],
    )
    assert broken.score is None and broken.error == "ZeroDivisionError"


def test_python_criteria_are_refused_without_the_allowlist_at_scoring_time() -> None:
    c = criterion(kind="python", function=f"{FIXTURES}.mentions_reference")
    result = score_programmatic(c, Rollout("x", reference="x"))
    assert result.score is None and result.error == "function not allowlisted"


def test_async_python_reward_needs_the_async_engine() -> None:
    import asyncio

    spec = validate_spec(
        {
            "criteria": [
                {
                    "key": "c",
                    "title": "C",
                    "kind": "python",
                    "function": f"{FIXTURES}.async_contains_reference",
                }
            ]
        },
        python_allowlist=[f"{FIXTURES}.*"],
    )
    engine = RubricEngine(spec, python_allowlist=[f"{FIXTURES}.*"])
    with pytest.raises(RubricError):
        engine.score(Rollout("42", reference="42"))
    assert asyncio.run(engine.ascore(Rollout("42", reference="42"))).total == 1.0


# --- aggregation -------------------------------------------------------------------------------------------------
DEMO = arithmetic_spec()


def test_weighted_mean_and_logged_metrics() -> None:
    spec = validate_spec(
        {
            "criteria": DEMO["criteria"]
            + [{"key": "short", "title": "Short", "kind": "length", "max": 3, "weight": 0}]
        }
    )
    engine = RubricEngine(spec)
    assert engine.score(Rollout("<answer>4</answer>", reference="4")).total == 1.0
    wrong = engine.score(Rollout("<answer>5</answer>", reference="4"))
    assert wrong.total == pytest.approx(0.25 / 1.25)
    assert wrong.criteria["short"].score == 0.0  # logged, but weight 0 keeps it out of the total


def test_gates_zero_the_total() -> None:
    spec = validate_spec({**DEMO, "gates": [{"criterion": "correct", "below": 0.5}]})
    engine = RubricEngine(spec)
    gated = engine.score(Rollout("<answer>5</answer>", reference="4"))
    assert gated.total == 0.0 and gated.gated_by == "correct"
    assert engine.score(Rollout("<answer>4</answer>", reference="4")).total == 1.0


def test_unscored_weighted_criterion_makes_the_total_unknown() -> None:
    engine = RubricEngine(validate_spec(DEMO))
    result = engine.score(Rollout("<answer>4</answer>", reference=None))
    assert result.total is None and "correct" in result.reason
    assert result.to_dict()["criteria"]["format"]["score"] == 1.0


def test_chat_completions_use_the_last_assistant_turn() -> None:
    rollout = Rollout.from_chat(
        [{"role": "user", "content": "2+2?"}],
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "calc", "arguments": "2+2"}}],
            },
            {"role": "tool", "content": "4"},
            {"role": "assistant", "content": [{"type": "text", "text": "<answer>4</answer>"}]},
        ],
        reference="4",
    )
    assert RubricEngine(validate_spec(DEMO)).score(rollout).total == 1.0
    assert "calc" in rollout.completion_transcript and "[user]" in rollout.prompt_text


def test_literal_values_keep_their_spelling() -> None:
    assert score(criterion(kind="match", mode="exact", value=7), "<answer>7</answer>")[0] == 1.0
    assert score(criterion(kind="match", mode="exact", value="07"), "<answer>7</answer>")[0] == 0.0
