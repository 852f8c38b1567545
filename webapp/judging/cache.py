"""The judge cache backed by the JudgeCache table, for training.judges.CachedJudge.

Judging runs inside an event loop (async_to_sync from the worker), so the ORM is reached through sync_to_async;
thread-sensitive calls run back in the worker's own thread, on its own database connection."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from webapp.judging.models import JudgeCache


def _get(key: str) -> dict[str, Any] | None:
    return JudgeCache.objects.filter(key=key).values_list("response", flat=True).first()


def _put(key: str, value: dict[str, Any]) -> None:
    try:
        with transaction.atomic():
            # Replaces an answer the judge refused as unparseable (cached before only verdicts were kept).
            JudgeCache.objects.update_or_create(key=key, defaults={"response": value})
    except IntegrityError:
        pass  # another worker stored an answer to the same request at the same moment


class DatabaseJudgeCache:
    async def get(self, key: str) -> dict[str, Any] | None:
        return await sync_to_async(_get)(key)

    async def put(self, key: str, value: dict[str, Any]) -> None:
        await sync_to_async(_put)(key, value)
