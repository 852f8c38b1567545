"""run_episodes tells its caller about rollouts as they end, inside the backend call, against a real local server
whose answers arrive one after another (issue 17: progress inside a chunk)."""

from __future__ import annotations

import time

from tests.support.judge_server import Reply, StubChatServer
from tests.training.generation.test_openai_backend import fast_backend
from training.generation import Example, SamplingParams, run_episodes
from training.generation.environments import SingleTurnEnvironment, WordleEnvironment


def _recording() -> tuple[list[tuple[float, int, int]], object]:
    calls: list[tuple[float, int, int]] = []

    def on_progress(ended: int, failed: int) -> None:
        calls.append((time.monotonic(), ended, failed))

    return calls, on_progress


def test_single_turn_rollouts_are_counted_as_their_completions_arrive():
    def respond(body, index):  # every third request fails at once; the others answer one after another, 0.1 s apart
        if index % 3 == 2:
            return Reply(status=400, body={"error": {"message": "bad"}})
        return Reply(content="7", delay_s=0.1 * (index + 1))

    calls, on_progress = _recording()
    with StubChatServer(respond) as server:
        backend = fast_backend(server.base_url, max_retries=0)
        try:
            started = time.monotonic()
            trajectories = run_episodes(backend, SingleTurnEnvironment, [Example(id=i, prompt=f"q{i}") for i in range(4)],
                                        SamplingParams(n=3, max_tokens=4), on_progress=on_progress)
            finished = time.monotonic()
        finally:
            backend.close()
    assert len(trajectories) == 12
    failed = sum(1 for t in trajectories if t.error)
    assert failed == 4
    assert sum(ended for _, ended, _ in calls) == 12 and sum(f for _, _, f in calls) == failed
    # Counted one by one while the call ran, not all at its end.
    during = [at for at, ended, _ in calls if ended > 0 and at < finished - 0.05]
    assert len(during) >= 8 and during[0] - started < (finished - started) / 2


def test_multi_turn_rollouts_are_counted_when_their_episode_ends():
    calls, on_progress = _recording()
    with StubChatServer(lambda body, index: "[crane]") as server:
        backend = fast_backend(server.base_url)
        try:
            trajectories = run_episodes(backend, WordleEnvironment, [Example(id=0, answer="crane", info={"secret": "crane"}),
                                                                    Example(id=1, answer="slate", info={"secret": "slate"})],
                                        SamplingParams(n=2, max_tokens=8), on_progress=on_progress)
        finally:
            backend.close()
    assert len(trajectories) == 4
    # Wordle is not single-turn: nothing is counted mid-call, every rollout once when its game ended.
    assert sum(ended for _, ended, _ in calls) == 4
    assert all(ended >= 0 for _, ended, _ in calls)
