"""Reward functions for the GRPO tests, importable by path from a JSON config run in another process."""

from __future__ import annotations

from typing import Any


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion)


def contains_answer(
    prompts: list[Any], completions: list[Any], answer: list[str | None], **kwargs: Any
) -> list[float | None]:
    """1 when the reference answer appears in the completion; None (not applicable) when there is no answer."""
    return [
        None if ref is None else float(ref in _text(c)) for c, ref in zip(completions, answer, strict=True)
    ]


def brevity(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
    """Shorter is better, in 0..1: varies between the completions of a group, so GRPO has a signal."""
    return [max(0.0, 1.0 - len(_text(c)) / 200.0) for c in completions]
