"""The openai backend against scripted local servers (faults) and the real vLLM OpenAI server (slow)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.support.vllm_servers import VLLMServer
from tests.training.generation.conftest import MAX_MODEL_LEN, ScriptedServer, chat_response, free_port
from training.generation import BackendConfig, SamplingParams, create_backend
from training.generation.backends.openai_backend import OpenAIBackend
from training.llm_client import OpenAICompatibleClient

HELLO = [{"role": "user", "content": "Say hello."}]


def fast_backend(base_url: str, *, max_retries: int = 3, **options: Any) -> OpenAIBackend:
    # Short backoff and timeout so the fault tests take milliseconds, not the production defaults.
    client = OpenAICompatibleClient(
        base_url=base_url,
        model="m",
        max_retries=max_retries,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        timeout_s=2,
    )
    return OpenAIBackend(base_url, "m", client=client, **options)


def test_each_sample_is_one_request_with_its_own_seed(scripted_server: ScriptedServer) -> None:
    scripted_server.respond = lambda body: (
        200,
        chat_response(f"seed {body['seed']}", prompt_tokens=5, completion_tokens=2),
    )
    backend = fast_backend(scripted_server.base_url)
    try:
        groups = backend.generate(
            [HELLO, HELLO], SamplingParams(n=3, max_tokens=16, seed=10, temperature=0.7)
        )
    finally:
        backend.close()
    assert [[c.text for c in group] for group in groups] == [["seed 10", "seed 11", "seed 12"]] * 2
    completion = groups[0][0]
    assert completion.message == {"role": "assistant", "content": "seed 10"}
    assert (completion.prompt_tokens, completion.completion_tokens, completion.finish_reason) == (
        5,
        2,
        "stop",
    )
    assert completion.ok and completion.latency_ms > 0 and completion.attempts == 1
    body = scripted_server.requests[0]
    assert body["max_tokens"] == 16 and body["temperature"] == 0.7 and body["messages"] == HELLO
    # Fields OpenAI itself rejects are only sent when set.
    assert not {"top_k", "min_p", "repetition_penalty", "tools", "stop", "logprobs"} & set(body)


def test_optional_sampling_fields_and_logprobs(scripted_server: ScriptedServer) -> None:
    scripted_server.respond = lambda body: (
        200,
        chat_response("hi", finish_reason="length", logprobs=[-0.5, -1.0]),
    )
    backend = fast_backend(scripted_server.base_url)
    try:
        (group,) = backend.generate(
            [HELLO], SamplingParams(top_k=20, min_p=0.1, repetition_penalty=1.1, stop=["\n"], logprobs=True)
        )
    finally:
        backend.close()
    body = scripted_server.requests[0]
    assert (body["top_k"], body["min_p"], body["repetition_penalty"], body["stop"], body["logprobs"]) == (
        20,
        0.1,
        1.1,
        ["\n"],
        True,
    )
    assert group[0].logprobs == [-0.5, -1.0] and group[0].finish_reason == "length"


def test_transient_failures_are_retried(scripted_server: ScriptedServer) -> None:
    replies = iter(
        [(503, {"error": {"message": "overloaded"}}), (200, b"{not json"), (200, chat_response("finally"))]
    )
    scripted_server.respond = lambda body: next(replies)
    backend = fast_backend(scripted_server.base_url)
    try:
        ((completion,),) = backend.generate([HELLO], SamplingParams())
    finally:
        backend.close()
    assert completion.text == "finally" and completion.attempts == 3


def test_a_failed_item_never_fails_the_batch(scripted_server: ScriptedServer) -> None:
    def respond(body: dict[str, Any]) -> tuple[int, Any]:
        text = body["messages"][-1]["content"]
        if text == "long":
            message = f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, you requested 5000 tokens."
            return 400, {"error": {"message": message, "type": "BadRequestError"}}
        if text == "bad":
            return 404, {"error": {"message": "The model `m` does not exist."}}
        if text == "flaky":
            return 500, {"error": {"message": "boom"}}
        return 200, chat_response("fine")

    scripted_server.respond = respond
    backend = fast_backend(scripted_server.base_url, max_retries=1)
    conversations = [[{"role": "user", "content": t}] for t in ("ok", "long", "bad", "flaky")]
    try:
        groups = backend.generate(conversations, SamplingParams(n=2))
    finally:
        backend.close()
    assert [len(g) for g in groups] == [2, 2, 2, 2]
    assert [g[0].error_kind for g in groups] == [None, "context_overflow", "bad_request", "endpoint"]
    assert groups[0][1].text == "fine"
    overflow = groups[1][0]
    assert overflow.finish_reason == "error" and "maximum context length" in (overflow.error or "")
    assert groups[3][0].attempts == 2 and "HTTP 500" in (groups[3][0].error or "")


def test_endpoint_down_is_an_error_per_item() -> None:
    backend = fast_backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=1)
    try:
        groups = backend.generate([HELLO, HELLO], SamplingParams())
    finally:
        backend.close()
    assert all(g[0].error_kind == "endpoint" and "cannot connect" in (g[0].error or "").lower() for g in groups)


def test_native_and_textual_tool_calls(scripted_server: ScriptedServer) -> None:
    native = [
        {
            "id": "call_9",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
        }
    ]
    replies = iter(
        [
            (200, chat_response(None, finish_reason="tool_calls", tool_calls=native)),
            (200, chat_response('<tool_call>\n{"name": "lookup", "arguments": {"key": "x"}}\n</tool_call>')),
        ]
    )
    scripted_server.respond = lambda body: next(replies)
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    backend = fast_backend(scripted_server.base_url, max_concurrency=1)
    try:
        ((first,),) = backend.generate([HELLO], SamplingParams(), tools=tools)
        ((second,),) = backend.generate([HELLO], SamplingParams(), tools=tools)
    finally:
        backend.close()
    assert scripted_server.requests[0]["tools"] == tools
    assert first.message == {"role": "assistant", "content": None, "tool_calls": native}
    assert first.finish_reason == "tool_calls" and first.text == ""
    call = second.message["tool_calls"][0]
    assert (
        call["function"] == {"name": "lookup", "arguments": '{"key": "x"}'}
        and second.finish_reason == "tool_calls"
    )


def test_tools_can_stay_out_of_the_request(scripted_server: ScriptedServer) -> None:
    backend = fast_backend(scripted_server.base_url, send_tools=False)
    try:
        backend.generate([HELLO], SamplingParams(), tools=[{"type": "function", "function": {"name": "f"}}])
    finally:
        backend.close()
    assert "tools" not in scripted_server.requests[0]


def test_messages_are_sent_in_wire_format(scripted_server: ScriptedServer) -> None:
    conversation = [
        {"role": "user", "content": "2+2?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "4"},
    ]
    backend = fast_backend(scripted_server.base_url)
    try:
        backend.generate([conversation], SamplingParams())
    finally:
        backend.close()
    sent = scripted_server.requests[0]["messages"]
    assert sent[1] == {"role": "assistant", "content": "", "tool_calls": conversation[1]["tool_calls"]}
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "4"}


def test_generate_works_inside_a_running_event_loop(scripted_server: ScriptedServer) -> None:
    backend = fast_backend(scripted_server.base_url)

    async def caller() -> tuple[str, str]:
        sync = backend.generate([HELLO], SamplingParams())[0][0].text
        awaited = (await backend.agenerate([HELLO], SamplingParams()))[0][0].text
        return sync, awaited

    try:
        assert asyncio.run(caller()) == ("ok", "ok")
    finally:
        backend.close()


def test_create_backend_builds_an_openai_backend(scripted_server: ScriptedServer) -> None:
    backend = create_backend(
        BackendConfig(kind="openai", model="m", base_url=scripted_server.base_url, max_retries=0)
    )
    try:
        assert backend.name == "openai"
        assert backend.generate([HELLO], SamplingParams())[0][0].text == "ok"
    finally:
        backend.close()


@pytest.mark.vllm_engine
@pytest.mark.slow
def test_real_vllm_server_generates_groups(vllm_server: VLLMServer) -> None:
    backend = OpenAIBackend(vllm_server.base_url, vllm_server.model, max_concurrency=8, timeout_s=120)
    conversations = [
        [{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a color."}],
        [{"role": "user", "content": "word " * (vllm_server.max_model_len + 50)}],
    ]
    try:
        groups = backend.generate(
            conversations, SamplingParams(n=2, max_tokens=24, seed=0, temperature=0.8, logprobs=True)
        )
        again = backend.generate(
            conversations[:1], SamplingParams(n=2, max_tokens=24, seed=0, temperature=0.8)
        )
    finally:
        backend.close()
    for group in groups[:2]:
        assert len(group) == 2
        for completion in group:
            assert completion.ok, completion.error
            assert completion.text and completion.message["role"] == "assistant"
            assert completion.prompt_tokens > 10 and 0 < completion.completion_tokens <= 24
            assert completion.finish_reason in ("stop", "length")
            assert (
                completion.logprobs is not None and len(completion.logprobs) == completion.completion_tokens
            )
    # The seed makes a sample reproducible on the server too.
    assert [c.text for c in again[0]] == [c.text for c in groups[0]]
    overflow = groups[2][0]
    assert overflow.error_kind == "context_overflow", overflow.error
    assert overflow.attempts == 1  # a 400 is not retried


@pytest.mark.slow
def test_real_vllm_server_accepts_tool_schemas(vllm_server: VLLMServer) -> None:
    from training.generation.environments.tools import BUILTIN_TOOLS

    backend = OpenAIBackend(vllm_server.base_url, vllm_server.model, timeout_s=120)
    tools = [BUILTIN_TOOLS["calculator"].schema()]
    prompt = 'Call the calculator. Reply exactly: <tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'
    try:
        ((completion,),) = backend.generate(
            [[{"role": "user", "content": prompt}]], SamplingParams(max_tokens=40, temperature=0), tools=tools
        )
    finally:
        backend.close()
    assert completion.ok, completion.error
    for call in completion.message.get("tool_calls") or []:  # the 135M model may or may not comply
        assert call["type"] == "function" and isinstance(json.loads(call["function"]["arguments"]), dict)
