"""Python reward functions the tests put on the allowlist (stand-ins for a team's installed reward module)."""

from __future__ import annotations

import asyncio


def mentions_reference(completion: str, reference: str | None) -> tuple[float, str]:
    ok = reference is not None and reference in completion
    return float(ok), "reference found" if ok else "reference missing"


def out_of_range(completion: str) -> float:
    return 3.0


def broken(completion: str) -> float:
    raise ZeroDivisionError("boom")


async def async_contains_reference(completion: str, reference: str | None) -> float:
    await asyncio.sleep(0)
    return float(reference is not None and reference in completion)


NOT_CALLABLE = 42
