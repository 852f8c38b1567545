"""The judge cache backed by the JudgeCache table, for training.judges.CachedJudge.

Judging runs inside an event loop (async_to_sync from the worker), so the ORM is reached through sync_to_async;
thread-sensitive calls run back in the worker's own thread, on its own database connection. That thread is one per
chunk, so the cache batches: lookups made in the same turn of the loop (a chunk asks for all its prompts at once) go
as one query, and answers are written in bulk every `flush_s` (soon enough that a worker killed mid-chunk has stored
what it paid for) and at the end of the chunk (`flush`). Per call, three queries on that one thread had capped a
chunk at a few dozen calls a second."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg
from asgiref.sync import sync_to_async
from django.db import connection

from webapp.judging.models import JudgeCache

logger = logging.getLogger(__name__)


def _get_many(keys: list[str]) -> dict[str, dict[str, Any]]:
    if connection.vendor != "postgresql":
        return dict(JudgeCache.objects.filter(key__in=keys).values_list("key", "response"))
    connection.ensure_connection()
    # The keys as one binary array, not quoted one by one into the SQL text (Django's client-side binding).
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(f"SELECT key, response::text FROM {JudgeCache._meta.db_table} WHERE key = ANY(%b::text[])",
                       [keys])
        return {key: json.loads(response) for key, response in cursor}


def _put_many(values: dict[str, dict[str, Any]]) -> None:
    # Replaces an answer the judge refused as unparseable (cached before only verdicts were kept); a row another
    # worker wrote at the same moment is simply overwritten with the same kind of answer.
    if connection.vendor != "postgresql":
        JudgeCache.objects.bulk_create(
            [JudgeCache(key=key, response=value) for key, value in values.items()],
            batch_size=500, update_conflicts=True, unique_fields=["key"], update_fields=["response"],
        )
        return
    connection.ensure_connection()
    # One INSERT … SELECT FROM unnest(arrays) sent in binary: model instances and client-side quoting of the JSON
    # had cost more CPU than the judge calls' own parsing.
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            f"INSERT INTO {JudgeCache._meta.db_table} (key, response, created_at) "
            "SELECT key, response::jsonb, statement_timestamp() FROM unnest(%b::text[], %b::text[]) AS t(key, response) "
            "ON CONFLICT (key) DO UPDATE SET response = EXCLUDED.response",
            [list(values), [json.dumps(value) for value in values.values()]],
        )


class _LoopState:
    def __init__(self) -> None:
        self.gets: dict[str, list[asyncio.Future[dict[str, Any] | None]]] = {}
        self.fetching = False
        self.puts: dict[str, dict[str, Any]] = {}
        self.flusher: asyncio.Task[None] | None = None


class DatabaseJudgeCache:
    def __init__(self, *, flush_s: float = 0.05) -> None:
        self.flush_s = flush_s
        self._loops: dict[int, _LoopState] = {}  # futures belong to one event loop

    def _state(self) -> _LoopState:
        return self._loops.setdefault(id(asyncio.get_running_loop()), _LoopState())

    async def get(self, key: str) -> dict[str, Any] | None:
        state = self._state()
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        state.gets.setdefault(key, []).append(future)
        if not state.fetching:
            state.fetching = True
            asyncio.get_running_loop().create_task(self._fetch(state))
        return await future

    async def _fetch(self, state: _LoopState) -> None:
        await asyncio.sleep(0)  # the other lookups of this turn join the query
        pending, state.gets, state.fetching = state.gets, {}, False
        try:
            found = await sync_to_async(_get_many)(list(pending))
        except Exception as error:
            for futures in pending.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            return
        for key, futures in pending.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))

    async def put(self, key: str, value: dict[str, Any]) -> None:
        state = self._state()
        state.puts[key] = value
        if state.flusher is None or state.flusher.done():
            state.flusher = asyncio.get_running_loop().create_task(self._flush_later(state))

    async def _flush_later(self, state: _LoopState) -> None:
        await asyncio.sleep(self.flush_s)
        await self._write(state)

    async def _write(self, state: _LoopState) -> None:
        values, state.puts = state.puts, {}
        if not values:
            return
        try:
            await sync_to_async(_put_many)(values)
        except Exception:  # a cache write that fails costs a repeated call later, never a result
            logger.exception("Could not store %d judge answers in the cache", len(values))

    async def flush(self) -> None:
        """Write what is buffered now (the end of a chunk)."""
        state = self._state()
        if state.flusher is not None and not state.flusher.done():
            state.flusher.cancel()
        await self._write(state)
