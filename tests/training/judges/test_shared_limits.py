"""Shared endpoint limits (training.limits) across clients, threads and event loops, counted at a real local server."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tests.support.judge_server import StubChatServer
from training.limits import LocalLimits, gcra_book
from training.llm_client import OpenAICompatibleClient

MESSAGES = [{"role": "user", "content": "hi"}]


def _burst(base_url: str, limiter: LocalLimits | None, requests: int) -> None:
    async def main() -> None:
        # Each thread builds its own client with a generous own limit, as each judge chunk does.
        async with OpenAICompatibleClient(base_url, "stub", max_concurrency=16, limiter=limiter) as client:
            await asyncio.gather(*(client.chat(MESSAGES) for _ in range(requests)))

    asyncio.run(main())


def _threads(base_url: str, limiter: LocalLimits | None, *, threads: int = 3, requests: int = 12) -> None:
    workers = [threading.Thread(target=_burst, args=(base_url, limiter, requests)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)


def test_one_limit_holds_across_threads_and_event_loops() -> None:
    with StubChatServer(latency_s=0.05) as server:
        _threads(server.base_url, None)
        unshared = server.stats["max_in_flight"]
    # Without a shared limiter each client counts its own: three threads went past one client's limit of 16 → 36.
    assert unshared > 16

    limiter = LocalLimits(max_concurrency=3)
    with StubChatServer(latency_s=0.05) as server:
        _threads(server.base_url, limiter)
        assert server.stats["requests"] == 36
        assert server.stats["max_in_flight"] == 3  # never more, and the limit is used in full
    assert limiter.in_flight == 0


def test_the_event_loop_that_asked_first_is_served_first() -> None:
    """One queue per process across event loops, first come first served: a worker's judge chunks (one event loop
    each) are served in the order they asked instead of sharing the slots evenly, which made them all end together
    and leave the endpoint idle while each wrote its scores and loaded the next chunk."""
    limiter = LocalLimits(max_concurrency=4)
    first_queued = threading.Event()

    def burst(base_url: str, name: str) -> None:
        async def main() -> None:
            # The client's own limit equals the endpoint's, as judge_for_endpoint builds it.
            async with OpenAICompatibleClient(base_url, "stub", max_concurrency=4, limiter=limiter) as client:
                calls = [asyncio.ensure_future(client.chat([{"role": "user", "content": f"{name}{i}"}]))
                         for i in range(12)]
                await asyncio.sleep(0.01)  # all twelve are queued
                first_queued.set()
                await asyncio.gather(*calls)

        asyncio.run(main())

    with StubChatServer(latency_s=0.03) as server:
        first = threading.Thread(target=burst, args=(server.base_url, "a"))
        first.start()
        assert first_queued.wait(5)
        second = threading.Thread(target=burst, args=(server.base_url, "b"))
        second.start()
        first.join(30)
        second.join(30)
        order = "".join(body["messages"][0]["content"][0] for body in server.bodies)
        assert server.stats["max_in_flight"] == 4
    assert order == "a" * 12 + "b" * 12


def test_a_cancelled_waiter_does_not_keep_others_waiting() -> None:
    limiter = LocalLimits(max_concurrency=1)

    async def main() -> list[str]:
        order: list[str] = []
        await limiter.slot_acquire()

        async def take(name: str) -> None:
            await limiter.slot_acquire()
            order.append(name)
            limiter.slot_release()

        first = asyncio.create_task(take("cancelled"))
        second = asyncio.create_task(take("second"))
        await asyncio.sleep(0.02)
        first.cancel()
        limiter.slot_release()
        await asyncio.wait_for(second, 2)
        return order

    assert asyncio.run(main()) == ["second"]


def test_requests_per_minute_allow_a_minutes_burst_then_pace() -> None:
    limiter = LocalLimits(max_concurrency=8, requests_per_minute=600)  # 10 a second after a burst of 600

    async def main() -> tuple[float, float]:
        started = time.monotonic()
        for _ in range(600):
            await limiter.rate_acquire(0)
        burst = time.monotonic() - started
        for _ in range(3):
            await limiter.rate_acquire(0)
        return burst, time.monotonic() - started - burst

    burst, paced = asyncio.run(main())
    assert burst < 0.5
    assert paced == pytest.approx(0.3, abs=0.08)


def test_gcra_books_tokens_and_gives_back_a_smaller_real_cost() -> None:
    tat, wait = gcra_book(0.0, 100.0, 60.0, 60.0)  # a minute's budget at once: no wait
    assert (tat, wait) == (160.0, 0.0)
    tat, wait = gcra_book(tat, 100.0, 30.0, 60.0)  # 30 more: wait until 30 have come back
    assert wait == pytest.approx(30.0)
    tat, _ = gcra_book(tat, 100.0, -30.0, 60.0)  # the call used 30 fewer than booked
    assert tat == pytest.approx(160.0)


def test_a_process_using_its_slots_does_not_ask_the_store_again_for_each_request() -> None:
    """A saturated worker's releases wake its next request at once; the store (Redis in a deployment) is asked
    only at the slow pace for slots freed elsewhere, not once per request in vain."""

    class CountingStore(LocalLimits):
        park_s = 0.02  # as RedisLimits: a freed slot waits for this process's next request

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.tries = 0

        def _slot_try(self) -> bool:
            self.tries += 1
            return super()._slot_try()

    limiter = CountingStore(max_concurrency=2)
    with StubChatServer(latency_s=0.02) as server:
        _threads(server.base_url, limiter, threads=1, requests=40)
        assert server.stats["requests"] == 40 and server.stats["max_in_flight"] == 2
    # Two slots taken, kept while in use (given back after max_hold_s and taken again): a handful of store calls.
    assert limiter.tries <= 12, limiter.tries
