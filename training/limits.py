"""Endpoint limits shared by every caller of one endpoint: concurrency slots and per-minute rates.

`OpenAICompatibleClient(..., limiter=...)` takes any object with this shape and asks it before every attempt, so a
provider's limits hold across threads, event loops, processes and nodes, counted as providers count them (every
attempt, retries too):

    class SharedLimits(Protocol):
        async def slot_acquire(self, *, retry: bool = False) -> None   # one request in flight; waits while the
                                                       # endpoint is full; retries are served before first attempts
        def slot_release(self) -> None
        async def rate_acquire(self, tokens: float) -> None   # one request (+ estimated tokens) per minute budget
        def tokens_adjust(self, delta: float) -> None  # real tokens minus the estimate, once the reply is in

`PollingLimits` implements the waiting once (at most one waiter per process asks the store again, the others queue
behind it, so a full endpoint costs a few store calls per second, not one per waiting request). The queue is one per
process, across threads and event loops, first come first served (retries first): a worker's judge chunks are
served in the order they asked, the older chunk's calls before the newer one's, so one chunk's calls keep the
endpoint busy while another chunk of the same worker writes its scores and loads the next; a subclass supplies
the store: `LocalLimits` (this process only: embedded mode, tests, a GRPO process) here, a Redis store in
`webapp.endpoints.limits` (cluster-wide). Rates are reservations (GCRA): each request books the next free instant
and sleeps until then, so a rate costs one store call per request and never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from typing import Protocol, runtime_checkable


@runtime_checkable
class SharedLimits(Protocol):
    async def slot_acquire(self, *, retry: bool = False) -> None: ...

    def slot_release(self) -> None: ...

    async def rate_acquire(self, tokens: float) -> None: ...

    def tokens_adjust(self, delta: float) -> None: ...


def _wake(future: asyncio.Future[None], gate: _Gate) -> None:
    """Runs on the future's loop: hand the gate over, or pass it on when that waiter was cancelled meanwhile."""
    if future.cancelled():
        gate.leave()
    elif not future.done():
        future.set_result(None)


class _Gate:
    """A FIFO mutex across threads and event loops, retries ahead of first attempts: only its holder polls the
    store."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        # (retries, first attempts), each in arrival order
        self._queues: tuple[deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]], ...] = (deque(), deque())

    async def enter(self, *, retry: bool = False) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._busy:
                self._busy = True
                return
            future: asyncio.Future[None] = loop.create_future()
            self._queues[0 if retry else 1].append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.leave()  # handed the gate just as we were cancelled: pass it on
            raise

    def leave(self) -> None:
        with self._lock:
            for queue in self._queues:
                while queue:
                    loop, future = queue.popleft()
                    if loop.is_closed() or future.done():
                        continue
                    try:
                        loop.call_soon_threadsafe(_wake, future, self)
                    except RuntimeError:  # the loop closed in between
                        continue
                    return
            self._busy = False


class PollingLimits(ABC):
    """Waiting logic over a store that answers "take a slot?" and "book n units of rate" at once."""

    poll_min_s = 0.002
    poll_max_s = 0.05
    # Where each store call is a network round trip (Redis), a freed slot is parked here for `park_s` for this
    # process's next request instead of going back at once, and reused for at most `max_hold_s` before it goes back,
    # so other processes get their turn: a busy process then asks the store about once per max_hold_s per slot,
    # not twice per request (blocking round trips in the event loop had halved a loaded worker's throughput).
    park_s = 0.0
    max_hold_s = 0.5

    def __init__(self, *, max_concurrency: int, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency ({max_concurrency}) must be >= 1")
        self.max_concurrency = max_concurrency
        self.requests_per_minute = requests_per_minute or None
        self.tokens_per_minute = tokens_per_minute or None
        self._gate = _Gate()
        self._waker_lock = threading.Lock()
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._parking = threading.Condition()
        self._parked: deque[tuple[float, float]] = deque()  # (parked at, taken from the store at), oldest first
        self._in_use: deque[float] = deque()  # taken from the store at, of the slots in use
        self._sweeper: threading.Thread | None = None
        self._full_at: float | None = None  # when the store last answered that every slot was taken

    # -- the store ------------------------------------------------------------------------------------------------
    @abstractmethod
    def _slot_try(self) -> bool:
        """Take one slot if one is free."""

    @abstractmethod
    def _slot_free(self) -> None:
        """Give one slot back."""

    @abstractmethod
    def _rate_book(self, name: str, amount: float, per_minute: float) -> float:
        """Book `amount` units of the `name` budget (per_minute units a minute, a minute's worth may burst); return
        the seconds to wait before using them. A negative amount returns units (a smaller real cost)."""

    # -- parking ----------------------------------------------------------------------------------------------------
    def _take(self) -> bool:
        """A parked slot, else one from the store. A store that said "full" less than poll_max_s ago, with no slot
        given back to it from here since, is not asked again: a saturated worker had asked Redis about once per
        request, in vain, since the slots freed were its own and came parked (a slot freed by another process is
        seen within poll_max_s, as the waiter's polls had been spaced)."""
        if not self.park_s:
            return self._slot_try()
        with self._parking:
            if self._parked:
                self._in_use.append(self._parked.popleft()[1])
                return True
        full_at = self._full_at
        if full_at is not None and time.monotonic() - full_at < self.poll_max_s:
            return False
        if not self._slot_try():
            self._full_at = time.monotonic()
            return False
        self._full_at = None
        with self._parking:
            self._in_use.append(time.monotonic())
        return True

    def _give(self) -> None:
        if self.park_s:
            now = time.monotonic()
            with self._parking:
                taken = self._in_use.popleft() if self._in_use else now - self.max_hold_s
                if now - taken < self.max_hold_s:
                    self._parked.append((now, taken))
                    if self._sweeper is None:
                        self._sweeper = threading.Thread(target=self._sweep_forever, name="slots-sweeper", daemon=True)
                        self._sweeper.start()
                    # Wake the sweeper only when this slot is due before the one it waits for (waking a thread
                    # at every release cost a GIL hand-over per call).
                    head_parked, head_taken = self._parked[0]
                    if len(self._parked) == 1 or taken + self.max_hold_s < min(head_parked + self.park_s,
                                                                               head_taken + self.max_hold_s):
                        self._parking.notify()
                    return
        self._full_at = None
        self._slot_free()

    def _sweep_forever(self) -> None:
        """Send parked slots back to the store once nobody here took them for park_s (or held them max_hold_s)."""
        with self._parking:
            while True:
                if not self._parked:
                    self._parking.wait()
                    continue
                now = time.monotonic()
                expired = 0
                while self._parked and (now - self._parked[0][0] >= self.park_s
                                        or now - self._parked[0][1] >= self.max_hold_s):
                    self._parked.popleft()
                    expired += 1
                if expired:
                    self._full_at = None
                    self._parking.release()
                    try:
                        for _ in range(expired):
                            self._slot_free()
                    finally:
                        self._parking.acquire()
                    continue
                parked_at, taken = self._parked[0]
                self._parking.wait(max(0.001, min(parked_at + self.park_s, taken + self.max_hold_s) - now))

    # -- the protocol ---------------------------------------------------------------------------------------------
    async def slot_acquire(self, *, retry: bool = False) -> None:
        if not self._gate._busy and self._take():
            return
        await self._gate.enter(retry=retry)
        try:
            loop = asyncio.get_running_loop()
            delay = self.poll_min_s
            while True:
                event = asyncio.Event()
                with self._waker_lock:  # before looking, so a release in between is not missed
                    self._waker = (loop, event)
                try:
                    if self._take():
                        return
                    try:
                        # A slot freed by this process wakes us at once; one freed elsewhere is seen at the next poll.
                        await asyncio.wait_for(event.wait(), timeout=delay)
                    except TimeoutError:
                        delay = min(delay * 2, self.poll_max_s)
                finally:
                    with self._waker_lock:
                        self._waker = None
        finally:
            self._gate.leave()

    def slot_release(self) -> None:
        self._give()
        with self._waker_lock:
            waker = self._waker
        if waker is not None:
            loop, event = waker
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    async def rate_acquire(self, tokens: float) -> None:
        wait = 0.0
        if self.requests_per_minute:
            wait = max(wait, self._rate_book("rpm", 1.0, self.requests_per_minute))
        if self.tokens_per_minute and tokens > 0:
            wait = max(wait, self._rate_book("tpm", min(tokens, self.tokens_per_minute), self.tokens_per_minute))
        if wait > 0:
            await asyncio.sleep(wait)

    def tokens_adjust(self, delta: float) -> None:
        if self.tokens_per_minute and delta:
            self._rate_book("tpm", delta, self.tokens_per_minute)


def gcra_book(tat: float, now: float, amount: float, per_minute: float) -> tuple[float, float]:
    """Generic cell rate algorithm: (new theoretical arrival time, seconds to wait). Same arithmetic as the Redis
    script in webapp.endpoints.limits: a bucket of a minute's budget refilling at per_minute / 60 a second."""
    interval = 60.0 / per_minute
    tat = max(tat, now)
    new_tat = tat + amount * interval
    if amount < 0:
        return max(new_tat, now), 0.0
    return new_tat, max(0.0, new_tat - 60.0 - now)


class LocalLimits(PollingLimits):
    """Shared by the threads and event loops of this process only."""

    def __init__(self, *, max_concurrency: int, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None) -> None:
        super().__init__(max_concurrency=max_concurrency, requests_per_minute=requests_per_minute,
                         tokens_per_minute=tokens_per_minute)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self._tat: dict[str, float] = {}

    def _slot_try(self) -> bool:
        with self._lock:
            if self.in_flight >= self.max_concurrency:
                return False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return True

    def _slot_free(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def _rate_book(self, name: str, amount: float, per_minute: float) -> float:
        with self._lock:
            tat, wait = gcra_book(self._tat.get(name, 0.0), time.monotonic(), amount, per_minute)
            self._tat[name] = tat
            return wait
