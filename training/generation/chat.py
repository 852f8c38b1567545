"""Chat rendering and tool-call parsing shared by the local backends (vLLM offline, transformers).

Local engines generate plain text. Tool calls are read from that text in the Hermes format most open
models are trained on (and that vLLM's `hermes` tool parser reads on the server side):

    <tool_call>
    {"name": "calculator", "arguments": {"expression": "2 + 2"}}
    </tool_call>

and turned into OpenAI `tool_calls`, so environments see one format whatever the backend.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any

from training.generation.types import Conversation, Message

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """OpenAI-format tool calls found in `text`; blocks that are not valid JSON calls are skipped.

    A skipped block is not an error here: the environment sees no tool call and answers as it would to
    plain text, which is what the model actually produced.
    """
    calls: list[dict[str, Any]] = []
    for match in _TOOL_CALL.finditer(text):
        try:
            payload = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            continue
        arguments = payload.get("arguments", payload.get("parameters", {}))
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {
                    "name": payload["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return calls


def assistant_message(text: str, *, tools_offered: bool, template_renders_tool_calls: bool) -> Message:
    """The assistant message for generated `text`, with `tool_calls` when tools were offered and called.

    Content keeps the raw text unless the chat template renders `tool_calls` itself: a template that
    ignores them (SmolLM2's) would otherwise show the model an empty turn followed by a tool result.
    """
    message: Message = {"role": "assistant", "content": text}
    if tools_offered:
        calls = parse_tool_calls(text)
        if calls:
            message["tool_calls"] = calls
            if template_renders_tool_calls:
                message["content"] = text[: text.find("<tool_call>")].strip()
    return message


def template_messages(conversation: Conversation) -> list[Message]:
    """Copy of `conversation` shaped the way Hugging Face chat templates expect.

    OpenAI sends tool-call arguments as a JSON string and allows `content: None`; templates index into
    arguments as a dict and print None as "None".
    """
    shaped: list[Message] = []
    for message in conversation:
        copy = dict(message)
        if copy.get("content") is None:
            copy["content"] = ""
        if copy.get("tool_calls"):
            calls = []
            for call in copy["tool_calls"]:
                function = dict(call.get("function", {}))
                if isinstance(function.get("arguments"), str):
                    # Malformed arguments stay a string: the template shows them as the model wrote them.
                    with contextlib.suppress(json.JSONDecodeError):
                        function["arguments"] = json.loads(function["arguments"])
                calls.append({**call, "function": function})
            copy["tool_calls"] = calls
        shaped.append(copy)
    return shaped


def render_prompt(tokenizer: Any, conversation: Conversation, tools: Sequence[dict[str, Any]] | None) -> str:
    """The prompt text for the next assistant turn, rendered by the model's own chat template."""
    return str(tokenizer.apply_chat_template(
        template_messages(conversation),
        tools=list(tools) if tools else None,
        add_generation_prompt=True,
        tokenize=False,
    ))


def template_renders_tool_calls(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return "tool_calls" in template
