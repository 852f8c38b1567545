from __future__ import annotations

import json
import time

import pytest

from training.generation.environments.tools import (
    BUILTIN_TOOLS,
    ToolEnvironment,
    ToolError,
    calculate,
    format_number,
)
from training.generation.types import Example


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2^10", 1024),  # models write powers with ^
        ("-(3 - 5)", 2),
        ("+4", 4),
        ("sqrt(16)", 4.0),
        ("abs(-3.5)", 3.5),
        ("round(2.567, 2)", 2.57),
        ("max(1, 7, 3)", 7),
        ("floor(2.7) + ceil(2.1)", 5),
        ("1.5e3", 1500.0),
        ("2 ** -1", 0.5),
        ("1 ** 100000", 1),  # a trivial base may have any exponent
    ],
)
def test_calculator_computes_arithmetic(expression: str, expected: float) -> None:
    assert calculate(expression) == pytest.approx(expected)


def test_calculator_knows_pi() -> None:
    assert calculate("2 * pi") == pytest.approx(6.283185307179586)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo pwned')", "not allowed"),
        ("__import__('os')", "'__import__' is not allowed"),
        ("open('/etc/passwd').read()", "not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
        ("(1).__class__", "Attribute is not allowed"),
        ("eval('1+1')", "'eval' is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[x for x in range(10**9)]", "not allowed"),
        ("'a' * 10", "only numbers"),
        ("x + 1", "Name is not allowed"),
        ("True + 1", "not bool"),
        ("1 if 1 else 2", "IfExp is not allowed"),
        ("sqrt(x=4)", "not allowed"),
        ("1 << 100000", "not allowed"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("sqrt(-1)", "cannot compute"),
        ("(-8) ** 0.5", "complex"),
        ("10 ** 400.0", "cannot compute"),
        ("1e999", "not a finite number"),
        ("2 +", "not an arithmetic expression"),
        ("", "not an arithmetic expression"),
        ("1" + "+1" * 150, "longer than"),
    ],
)
def test_calculator_refuses_anything_else(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        calculate(expression)


@pytest.mark.parametrize(
    "expression", ["9 ** 9 ** 9", "10 ** 100000", "2 ** 5000", "99999 ** 9999", "(10**100) ** 100"]
)
def test_calculator_refuses_huge_powers_without_computing_them(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError, match="too large"):
        calculate(expression)
    assert time.perf_counter() - started < 0.5


def test_calculator_bounds_results_built_by_multiplication() -> None:
    with pytest.raises(ToolError, match="too large"):
        calculate("(2**4000) * (2**4000)")


def test_calculator_refuses_deep_nesting_cleanly() -> None:
    with pytest.raises(ToolError):
        calculate("(" * 100 + "1" + ")" * 99)


def test_calculator_rejects_non_strings() -> None:
    with pytest.raises(ToolError, match="must be a string"):
        calculate(42)  # type: ignore[arg-type]


def test_format_number_prints_integral_floats_as_integers() -> None:
    assert format_number(4.0) == "4"
    assert format_number(1 / 3) == "0.333333333333"
    assert format_number(10**20) == "100000000000000000000"


def _call(name: str, arguments: object, call_id: str = "call_1") -> dict[str, object]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}


EXAMPLE = Example(
    id="ex1",
    prompt="What is the capital of France times 2?",
    info={"lookup": {"capital of France": "Paris", "population": 2102650}},
)


def test_tool_environment_opening_describes_the_tools() -> None:
    env = ToolEnvironment(system_prompt="Be precise.", prompt_template="Question: {{ prompt }}")
    opening = env.reset(EXAMPLE)
    assert opening[0]["role"] == "system"
    assert opening[0]["content"].startswith("Be precise.")
    assert "<tool_call>" in opening[0]["content"] and '"calculator"' in opening[0]["content"]
    assert opening[1] == {"role": "user", "content": "Question: What is the capital of France times 2?"}
    assert [schema["function"]["name"] for schema in env.tools or []] == ["calculator", "lookup"]


def test_tool_environment_runs_calls_and_answers_with_tool_messages() -> None:
    env = ToolEnvironment()
    env.reset(EXAMPLE)
    reply, done, info = env.step(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                _call("lookup", {"key": "population"}, "a"),
                _call("calculator", {"expression": "6*7"}, "b"),
            ],
        }
    )
    assert not done
    assert reply == [
        {"role": "tool", "tool_call_id": "a", "name": "lookup", "content": "2102650"},
        {"role": "tool", "tool_call_id": "b", "name": "calculator", "content": "42"},
    ]
    assert info["tool_calls"] == 2 and info["tool_errors"] == 0 and info["tool_turns"] == 1

    reply, done, info = env.step({"role": "assistant", "content": "The answer is 42."})
    assert done and reply == []
    assert info["final_answer"] == "The answer is 42." and not info["tool_limit_reached"]


def test_lookup_is_case_insensitive_and_lists_keys_when_missing() -> None:
    env = ToolEnvironment()
    env.reset(EXAMPLE)
    reply, _, info = env.step(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [_call("lookup", {"key": "CAPITAL OF FRANCE"}), _call("lookup", {"key": "mayor"})],
        }
    )
    assert reply[0]["content"] == "Paris"
    assert reply[1]["content"].startswith(
        "error: no entry for 'mayor'; known keys: capital of France, population"
    )
    assert info["tool_errors"] == 1


def test_lookup_falls_back_to_the_whole_info_dict() -> None:
    env = ToolEnvironment(tools=["lookup"])
    env.reset(Example(id=1, prompt="p", info={"color": "blue"}))
    reply, _, _ = env.step(
        {"role": "assistant", "content": "", "tool_calls": [_call("lookup", {"key": "color"})]}
    )
    assert reply[0]["content"] == "blue"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (_call("shell", {"cmd": "rm -rf /"}), "error: unknown tool 'shell'"),
        (_call("calculator", "{not json"), "error: arguments are not valid JSON"),
        (_call("calculator", "[1, 2]"), "error: arguments must be a JSON object"),
        (_call("calculator", {}), "error: missing argument(s): expression"),
        (
            _call("calculator", {"expression": "__import__('os')"}),
            "error: function '__import__' is not allowed",
        ),
        (_call("lookup", {"key": 3}), "error: key must be a string"),
        ({"id": "x"}, "error: unknown tool None"),
    ],
)
def test_bad_tool_calls_get_an_error_reply_and_are_counted(call: dict[str, object], error: str) -> None:
    env = ToolEnvironment()
    env.reset(EXAMPLE)
    reply, done, info = env.step({"role": "assistant", "content": "", "tool_calls": [call]})
    assert not done
    assert reply[0]["role"] == "tool" and reply[0]["content"].startswith(error)
    assert info["tool_errors"] == 1 and info["calls"][0]["error"]


def test_tool_turn_limit_ends_the_episode() -> None:
    env = ToolEnvironment(max_tool_turns=2)
    env.reset(EXAMPLE)
    message = {"role": "assistant", "content": "", "tool_calls": [_call("calculator", {"expression": "1+1"})]}
    assert env.step(message).done is False
    reply, done, info = env.step(message)
    assert done and info["tool_limit_reached"] and info["tool_turns"] == 2
    assert reply[0]["content"] == "2"  # the last calls still get their results, so the trajectory is complete


def test_tool_environment_rejects_unknown_tool_names() -> None:
    with pytest.raises(ValueError, match="unknown tools"):
        ToolEnvironment(tools=["calculator", "browser"])
    assert set(BUILTIN_TOOLS) == {"calculator", "lookup"}
