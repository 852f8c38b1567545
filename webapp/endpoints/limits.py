"""Endpoint limits shared by the whole cluster, in Redis: every worker, thread and event loop calling one endpoint
counts against the endpoint's `max_concurrency`, `requests_per_minute` and `tokens_per_minute` together.

Concurrency is a counting semaphore with an owner per process: a hash {holder: slots held} and a sorted set
{holder: lease expiry}. Each process renews its lease every third of RUBRICON_ENDPOINT_SLOT_TTL_S from a daemon
thread while it holds slots; a holder whose lease lapsed (a killed worker) is dropped by the next acquire, and its
slots come back. Rates are GCRA reservations on one key per budget. Every script reads Redis' clock, so nodes with
skewed clocks agree. Without Redis (embedded mode: one worker process) the limits are shared by the threads of
that process only (training.limits.LocalLimits).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

import redis
from django.conf import settings

from training.limits import LocalLimits, PollingLimits, SharedLimits
from webapp.endpoints.models import ModelEndpoint

logger = logging.getLogger(__name__)

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

# KEYS: holders hash, leases zset. ARGV: holder, limit, ttl ms. Returns 1 when a slot was taken.
_ACQUIRE = _NOW_MS + """
for _, holder in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('HDEL', KEYS[1], holder)
  redis.call('ZREM', KEYS[2], holder)
end
local used = 0
for _, n in ipairs(redis.call('HVALS', KEYS[1])) do used = used + tonumber(n) end
if used >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 86400000)
redis.call('PEXPIRE', KEYS[2], 86400000)
return 1
"""

_RELEASE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0
"""

# Renew the holder's lease, if it still holds slots.
_RENEW = _NOW_MS + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
  return 1
end
return 0
"""

# GCRA (training.limits.gcra_book). KEYS: the budget's key. ARGV: amount, per minute. Returns the wait in ms.
_BOOK = _NOW_MS + """
local interval = 60000 / tonumber(ARGV[2])
local amount = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + amount * interval
if new_tat < now then new_tat = now end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', 120000)
if amount < 0 then return 0 end
local wait = new_tat - 60000 - now
if wait < 0 then return 0 end
return math.floor(wait)
"""


class RedisLimits(PollingLimits):
    park_s = 0.02  # a freed slot waits 20 ms for this process's next request before it goes back to Redis
    max_hold_s = 0.5
    def __init__(self, *, client: redis.Redis, key: str, ttl_s: float, max_concurrency: int,
                 requests_per_minute: float | None = None, tokens_per_minute: float | None = None) -> None:
        super().__init__(max_concurrency=max_concurrency, requests_per_minute=requests_per_minute,
                         tokens_per_minute=tokens_per_minute)
        self.redis = client
        self.key = key
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._keys = [f"{key}:holders", f"{key}:leases"]
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._book = client.register_script(_BOOK)
        self._held = 0
        self._held_lock = threading.Lock()
        self._renewer: threading.Thread | None = None

    def _slot_try(self) -> bool:
        if not self._acquire(keys=self._keys, args=[self.holder, self.max_concurrency, self.ttl_ms]):
            return False
        with self._held_lock:
            self._held += 1
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_forever, name=f"slots-{self.key}", daemon=True)
                self._renewer.start()
        return True

    def _slot_free(self) -> None:
        with self._held_lock:
            self._held = max(0, self._held - 1)
        try:
            self._release(keys=self._keys, args=[self.holder])
        except redis.RedisError as error:  # the lease lapses and the slot comes back that way
            logger.warning("Could not release a slot of %s: %s", self.key, error)

    def _renew_forever(self) -> None:
        period = self.ttl_ms / 3000
        while True:
            threading.Event().wait(period)
            if not self._held:
                continue
            try:
                self._renew(keys=self._keys, args=[self.holder, self.ttl_ms])
            except redis.RedisError as error:
                logger.warning("Could not renew the slots of %s: %s", self.key, error)

    def _rate_book(self, name: str, amount: float, per_minute: float) -> float:
        return float(self._book(keys=[f"{self.key}:{name}"], args=[amount, per_minute])) / 1000

    def in_flight(self) -> int:
        """Slots held now, across the cluster (for tests and the operator)."""
        return sum(int(n) for n in self.redis.hvals(self._keys[0]))


_limiters: dict[tuple[Any, ...], PollingLimits] = {}
_limiters_lock = threading.Lock()


def limits_url() -> str:
    return str(getattr(settings, "RUBRICON_LIMITS_URL", "") or "")


def limits_key(endpoint: ModelEndpoint) -> str:
    # The database's name too: two deployments (or test runs) sharing one Redis never share a limit by accident.
    return f"rubricon:limits:{settings.DATABASES['default']['NAME']}:endpoint:{endpoint.pk}"


def endpoint_limiter(endpoint: ModelEndpoint) -> SharedLimits:
    """The one limiter of this endpoint in this process (cached: every chunk and thread shares it), backed by Redis
    where the deployment has it, so it is the same limit on every worker."""
    url = limits_url()
    identity = (url, endpoint.pk, endpoint.max_concurrency, endpoint.requests_per_minute, endpoint.tokens_per_minute)
    with _limiters_lock:
        limiter = _limiters.get(identity)
        if limiter is None:
            options: dict[str, Any] = {"max_concurrency": endpoint.max_concurrency,
                                       "requests_per_minute": endpoint.requests_per_minute,
                                       "tokens_per_minute": endpoint.tokens_per_minute}
            if url.startswith(("redis://", "rediss://", "unix://")):
                limiter = RedisLimits(client=redis.Redis.from_url(url), key=limits_key(endpoint),
                                      ttl_s=settings.RUBRICON_ENDPOINT_SLOT_TTL_S, **options)
            else:
                limiter = LocalLimits(**options)
            _limiters[identity] = limiter
        return limiter
