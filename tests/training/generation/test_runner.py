"""The episode runner on the openai backend against scripted servers: deterministic multi-turn episodes."""

from __future__ import annotations

import functools
import json
from typing import Any

from tests.training.generation.conftest import ScriptedServer, chat_response
from tests.training.generation.test_openai_backend import fast_backend
from training.generation import Example, SamplingParams, run_episodes
from training.generation.environments import SingleTurnEnvironment, ToolEnvironment, WordleEnvironment


def _assistant_turns(body: dict[str, Any]) -> int:
    return sum(1 for m in body["messages"] if m["role"] == "assistant")


def test_wordle_episodes_play_to_the_end(scripted_server: ScriptedServer) -> None:
    script = ["Let me think.", "<guess>SLATE</guess>", "<guess>CRANE</guess>"]
    scripted_server.respond = lambda body: (
        200,
        chat_response(script[_assistant_turns(body)], prompt_tokens=50, completion_tokens=4),
    )
    backend = fast_backend(scripted_server.base_url)
    examples = [Example(id="a", answer="CRANE"), Example(id="b", answer="TRAIN")]
    try:
        trajectories = run_episodes(
            backend,
            functools.partial(WordleEnvironment, max_guesses=2),
            examples,
            SamplingParams(n=2, seed=5),
        )
    finally:
        backend.close()

    assert [(t.example_id, t.sample_index) for t in trajectories] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    solved = trajectories[0]
    assert solved.done and not solved.truncated and solved.error is None
    assert solved.info["solved"] and solved.info["format_errors"] == 1 and solved.info["turns_used"] == 3
    assert [m["role"] for m in solved.messages] == ["system", "user"] + ["assistant", "user"] * 3
    assert solved.prompt_message_count == 2 and len(solved.completion_messages) == 6
    assert solved.completion == "<guess>CRANE</guess>"
    assert [turn.index for turn in solved.turns] == [0, 1, 2]
    assert solved.turns[0].info["format_errors"] == 1 and solved.turns[2].info["solved"]
    assert (solved.prompt_tokens, solved.completion_tokens, solved.finish_reason) == (50, 12, "stop")

    # The same script against TRAIN uses up both guesses.
    lost = trajectories[2]
    assert lost.done and lost.info["guesses"] == ["SLATE", "CRANE"] and not lost.info["solved"]
    assert lost.messages[-1]["content"].endswith("The word was TRAIN.")

    # Wordle's opening does not depend on the secret, so all four first turns are one request with n=4
    # (the openai backend sends one HTTP request per sample, seeded seed + index).
    first_turn_seeds = sorted(b["seed"] for b in scripted_server.requests if _assistant_turns(b) == 0)
    assert first_turn_seeds == [5, 6, 7, 8]
    assert json.dumps(trajectories[0].to_dict())  # JSON-ready for the Rollout row


def test_wordle_runs_out_of_guesses(scripted_server: ScriptedServer) -> None:
    scripted_server.respond = lambda body: (200, chat_response("<guess>PIOUS</guess>"))
    backend = fast_backend(scripted_server.base_url)
    try:
        (trajectory,) = run_episodes(
            backend,
            functools.partial(WordleEnvironment, max_guesses=3),
            [Example(id=1, answer="CRANE")],
            SamplingParams(),
        )
    finally:
        backend.close()
    assert trajectory.done and trajectory.info["guesses_used"] == 3 and not trajectory.info["solved"]
    assert trajectory.messages[-1]["content"].endswith("The word was CRANE.")


def test_tool_episode_records_tool_calls_and_results(scripted_server: ScriptedServer) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "17 * 3"}'},
    }

    def respond(body: dict[str, Any]) -> tuple[int, Any]:
        if _assistant_turns(body) == 0:
            return 200, chat_response(None, finish_reason="tool_calls", tool_calls=[call])
        return 200, chat_response(f"The answer is {body['messages'][-1]['content']}.")

    scripted_server.respond = respond
    backend = fast_backend(scripted_server.base_url)
    try:
        (trajectory,) = run_episodes(
            backend,
            functools.partial(ToolEnvironment, system_prompt="Use tools."),
            [Example(id=1, prompt="17*3?")],
            SamplingParams(),
        )
    finally:
        backend.close()
    assert [m["role"] for m in trajectory.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert trajectory.messages[2]["tool_calls"] == [call]
    assert trajectory.messages[3] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "name": "calculator",
        "content": "51",
    }
    assert trajectory.completion == "The answer is 51."
    assert trajectory.info["final_answer"] == "The answer is 51." and trajectory.info["tool_calls"] == 1
    assert [t.finish_reason for t in trajectory.turns] == ["tool_calls", "stop"]
    assert scripted_server.requests[0]["tools"][0]["function"]["name"] == "calculator"


def test_failures_stay_inside_their_own_trajectory(scripted_server: ScriptedServer) -> None:
    def respond(body: dict[str, Any]) -> tuple[int, Any]:
        if "poison" in body["messages"][-1]["content"]:
            return 400, {"error": {"message": "bad request for this one"}}
        return 200, chat_response("fine")

    scripted_server.respond = respond
    backend = fast_backend(scripted_server.base_url)
    make_env = functools.partial(SingleTurnEnvironment, prompt_template="{{ prompt }} {{ info.suffix }}")
    examples = [
        Example(id="ok", prompt="hello", info={"suffix": "!"}),
        Example(id="http", prompt="poison", info={"suffix": "!"}),
        Example(id="template", prompt="hello", info={}),
    ]
    try:
        ok, http, template = run_episodes(backend, make_env, examples, SamplingParams())
    finally:
        backend.close()
    assert ok.error is None and ok.completion == "fine" and ok.done
    assert http.error_kind == "bad_request" and "bad request for this one" in (http.error or "")
    assert (
        http.finish_reason == "error" and http.messages[-1]["role"] == "user"
    )  # prompt kept, no fake answer
    assert template.error_kind == "template" and "example 'template'" in (template.error or "")
    assert template.messages == [] and template.turns == []


def test_environment_failures_and_turn_limit(scripted_server: ScriptedServer) -> None:
    scripted_server.respond = lambda body: (200, chat_response("no guess here"))
    backend = fast_backend(scripted_server.base_url)
    try:
        bad_secret, endless = run_episodes(
            backend,
            functools.partial(WordleEnvironment, max_turns=50),
            [Example(id="x", answer="toolong"), Example(id="y", answer="CRANE")],
            SamplingParams(),
            max_turns=3,
        )
    finally:
        backend.close()
    assert bad_secret.error_kind == "environment" and "5-letter secret" in (bad_secret.error or "")
    assert endless.truncated and not endless.done and len(endless.turns) == 3
    assert endless.info["format_errors"] == 3
