"""Tool-use environment: OpenAI tool calls against safe built-in tools.

Tools:
- `calculator(expression)`: arithmetic evaluated by walking the Python AST (numbers, + - * / // % **,
  parentheses, a few math functions and constants). No `eval`: names, attributes, calls to anything else,
  strings and containers are refused; huge exponents and results are refused before they are computed.
- `lookup(key)`: a value from the example's `info["lookup"]` dict (or, when that is absent, from `info`).

Each assistant turn with `tool_calls` gets one `role: tool` message per call (with its `tool_call_id`);
a turn without tool calls is the final answer and ends the episode. After `max_tool_turns` turns with
tool calls the episode ends too (`info["tool_limit_reached"]`). A failing tool call (bad arguments,
unknown tool, calculator error) returns "error: ..." to the model, is counted, and never crashes.

Models whose chat template ignores `tools` (SmolLM2's) are told about the tools and the Hermes
`<tool_call>` format in the system prompt (`describe_tools_in_prompt`, on by default).
"""

from __future__ import annotations

import ast
import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from training.generation.environments.base import StepResult
from training.generation.environments.single_turn import PromptBuilder
from training.generation.types import Conversation, Example, Message


class ToolError(Exception):
    """A tool call that cannot be answered; the message is shown to the model."""


# ---------------------------------------------------------------------------------------------- calculator

MAX_EXPRESSION_CHARS = 200
MAX_INT_BITS = 4096  # ~1233 decimal digits: plenty for arithmetic, far from a memory problem
MAX_EXPONENT = 10_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "exp": math.exp,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> int | float:
    """Value of an arithmetic expression, or `ToolError` saying why it is refused."""
    if not isinstance(expression, str):
        raise ToolError("expression must be a string")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    source = expression.strip().replace("^", "**")  # models often write powers as ^
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ToolError(f"not an arithmetic expression: {exc.__class__.__name__}") from None
    try:
        value = _evaluate(tree.body)
    except ToolError:
        raise
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (OverflowError, ValueError, TypeError, RecursionError) as exc:
        raise ToolError(f"cannot compute: {exc}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("result is not a finite number")
    return value


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError(f"only numbers are allowed, not {type(value).__name__}")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("number too large")
    number: int | float = value
    return number


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant):
        return _number(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _number(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ToolError("result is a complex number")
        return _number(result)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
        and 0 < len(node.args) <= 4
    ):
        arguments = [_evaluate(arg) for arg in node.args]
        return _number(_FUNCTIONS[node.func.id](*arguments))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        allowed = ", ".join(sorted(_FUNCTIONS))
        raise ToolError(f"function {node.func.id!r} is not allowed (allowed: {allowed})")
    raise ToolError(f"{type(node).__name__} is not allowed in arithmetic")


def _check_power(base: int | float, exponent: int | float) -> None:
    # Refuse before computing: 9**9**9 would run for minutes and eat gigabytes.
    if abs(exponent) > MAX_EXPONENT and abs(base) not in (0, 1):
        raise ToolError(f"exponent {exponent} is too large (limit {MAX_EXPONENT})")
    whole = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if whole and max(int(base).bit_length() - 1, 0) * exponent > MAX_INT_BITS:
        raise ToolError("result would be too large")


def format_number(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".12g")
    return str(value)


# ---------------------------------------------------------------------------------------------- tools


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any], Example], str]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def _calculator(arguments: dict[str, Any], example: Example) -> str:
    return format_number(calculate(arguments.get("expression")))  # type: ignore[arg-type]


def _lookup(arguments: dict[str, Any], example: Example) -> str:
    key = arguments.get("key")
    if not isinstance(key, str):
        raise ToolError("key must be a string")
    table = example.info.get("lookup")
    if not isinstance(table, dict):
        table = example.info
    if key not in table:
        matches = [k for k in table if isinstance(k, str) and k.lower() == key.strip().lower()]
        if not matches:
            known = ", ".join(sorted(str(k) for k in table)[:20]) or "none"
            raise ToolError(f"no entry for {key!r}; known keys: {known}")
        key = matches[0]
    value = table[key]
    return value if isinstance(value, str) else json.dumps(value)


BUILTIN_TOOLS: dict[str, Tool] = {
    "calculator": Tool(
        "calculator",
        "Evaluate an arithmetic expression, e.g. '(12 + 7) * 3 / 2' or 'sqrt(2) ** 3'.",
        {
            "type": "object",
            "properties": {"expression": {"type": "string", "description": "The arithmetic expression."}},
            "required": ["expression"],
        },
        _calculator,
    ),
    "lookup": Tool(
        "lookup",
        "Look up a fact by its key in the reference table for this question.",
        {
            "type": "object",
            "properties": {"key": {"type": "string", "description": "The key to look up."}},
            "required": ["key"],
        },
        _lookup,
    ),
}

TOOL_PROMPT = """You can use these tools:
{schemas}
To call a tool, write exactly:
<tool_call>
{{"name": "<tool name>", "arguments": {{<arguments as JSON>}}}}
</tool_call>
The result comes back in the next message. When you know the answer, reply with it and no tool call."""


class ToolEnvironment:
    def __init__(
        self,
        system_prompt: str | None = None,
        prompt_template: str | None = None,
        *,
        tools: Sequence[str] = ("calculator", "lookup"),
        max_tool_turns: int = 4,
        describe_tools_in_prompt: bool = True,
    ) -> None:
        unknown = [name for name in tools if name not in BUILTIN_TOOLS]
        if unknown:
            raise ValueError(f"unknown tools {unknown}; built-in tools are {sorted(BUILTIN_TOOLS)}")
        if max_tool_turns < 1:
            raise ValueError(f"max_tool_turns ({max_tool_turns}) must be at least 1")
        self.builder = PromptBuilder(system_prompt, prompt_template)
        self._tools = {name: BUILTIN_TOOLS[name] for name in tools}
        self.tools: list[dict[str, Any]] | None = [tool.schema() for tool in self._tools.values()]
        self.max_tool_turns = max_tool_turns
        self.describe_tools_in_prompt = describe_tools_in_prompt
        self.example = Example()
        self.tool_turns = 0
        self.tool_calls = 0
        self.tool_errors = 0
        self.calls: list[dict[str, Any]] = []

    def reset(self, example: Example) -> Conversation:
        self.example = example
        suffix = ""
        if self.describe_tools_in_prompt:
            schemas = "\n".join(json.dumps(schema["function"]) for schema in self.tools or [])
            suffix = TOOL_PROMPT.format(schemas=schemas)
        return self.builder.build(example, system_suffix=suffix)

    def info(self, *, final_answer: str | None, limit_reached: bool) -> dict[str, Any]:
        return {
            "tool_turns": self.tool_turns,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "calls": list(self.calls),
            "tool_limit_reached": limit_reached,
            "final_answer": final_answer,
        }

    def step(self, message: Message) -> StepResult:
        calls = message.get("tool_calls") or []
        if not calls:
            return StepResult(
                [], True, self.info(final_answer=message.get("content") or "", limit_reached=False)
            )
        self.tool_turns += 1
        replies: list[Message] = []
        for call in calls:
            function = call.get("function") or {}
            name = function.get("name")
            try:
                output = self._run(name, function.get("arguments"))
                error = None
            except ToolError as exc:
                output, error = f"error: {exc}", str(exc)
                self.tool_errors += 1
            self.tool_calls += 1
            self.calls.append(
                {"name": name, "arguments": function.get("arguments"), "output": output, "error": error}
            )
            replies.append(
                {"role": "tool", "tool_call_id": call.get("id", ""), "name": name, "content": output}
            )
        limit = self.tool_turns >= self.max_tool_turns
        return StepResult(replies, limit, self.info(final_answer=None, limit_reached=limit))

    def _run(self, name: Any, raw_arguments: Any) -> str:
        tool = self._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ToolError(f"unknown tool {name!r}; available: {', '.join(self._tools)}")
        if isinstance(raw_arguments, str):
            try:
                arguments = json.loads(raw_arguments) if raw_arguments.strip() else {}
            except json.JSONDecodeError:
                raise ToolError("arguments are not valid JSON") from None
        else:
            arguments = raw_arguments or {}
        if not isinstance(arguments, dict):
            raise ToolError("arguments must be a JSON object")
        missing = [p for p in tool.parameters.get("required", []) if p not in arguments]
        if missing:
            raise ToolError(f"missing argument(s): {', '.join(missing)}")
        return tool.run(arguments, self.example)
