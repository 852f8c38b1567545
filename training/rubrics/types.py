"""Plain data exchanged with the rest of Rubricon: one rollout in, one score per criterion and a total out.

Rollout(completion, prompt=None, messages=None, completion_messages=None, reference=None, info={},
        completion_tokens=None, group_id=None)
CriterionResult(key, score, reason, ...)      # score None = not scored (judge failure, missing reference)
RolloutScore(total, criteria, gated_by, reason)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def message_text(content: Any) -> str:
    """Chat message content may be a string or a list of parts ({"type": "text", "text": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


@dataclass(frozen=True)
class Rollout:
    """One completion (or trajectory) of one example, as the rubric sees it."""

    completion: str
    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None  # the prompt as chat messages
    completion_messages: list[dict[str, Any]] | None = (
        None  # multi-turn: assistant turns, tool calls, tool results
    )
    reference: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    completion_tokens: int | None = (
        None  # when known (e.g. TRL completion_ids), used by token-length criteria
    )
    group_id: str | None = None  # rollouts sharing it form a GRPO group (group-relative judging)

    @classmethod
    def from_chat(
        cls,
        prompt: str | list[dict[str, Any]],
        completion: str | list[dict[str, Any]],
        **fields: Any,
    ) -> Rollout:
        """Build from TRL-style values: strings, or lists of chat messages."""
        prompt_text = prompt if isinstance(prompt, str) else None
        messages = None if isinstance(prompt, str) else list(prompt)
        if isinstance(completion, str):
            return cls(completion=completion, prompt=prompt_text, messages=messages, **fields)
        turns = list(completion)
        # The answer is what the assistant said last; earlier turns and tool results stay for judges.
        assistant = [m for m in turns if m.get("role") == "assistant"]
        text = message_text(assistant[-1].get("content")) if assistant else ""
        return cls(
            completion=text, prompt=prompt_text, messages=messages, completion_messages=turns, **fields
        )

    @property
    def prompt_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        if self.messages:
            return "\n\n".join(
                f"[{m.get('role', '?')}]\n{message_text(m.get('content'))}" for m in self.messages
            )
        return ""

    @property
    def completion_transcript(self) -> str:
        """Everything the policy produced, tool calls included, for judges that grade the process."""
        if not self.completion_messages:
            return self.completion
        parts = []
        for m in self.completion_messages:
            text = message_text(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                text += f"\n<tool_call name={fn.get('name')!r}>{fn.get('arguments', '')}</tool_call>"
            parts.append(f"[{m.get('role', '?')}]\n{text}")
        return "\n\n".join(parts)


@dataclass
class CriterionResult:
    key: str
    score: float | None  # 0..1; None = could not be scored (see reason / error)
    reason: str = ""
    choice: str | None = None  # the judge's raw verdict (choice label or number as text)
    rationale: str | None = None  # the judge's reasoning, written before its verdict
    raw_response: str | None = None
    error: str | None = None  # set when scoring failed (judge call failed, output unparseable)
    judge_fingerprint: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RolloutScore:
    total: float | None  # weighted mean over weight > 0 criteria, 0..1; None when one of them is unscored
    criteria: dict[str, CriterionResult]
    gated_by: str | None = None  # key of the gate criterion that forced the total to 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "gated_by": self.gated_by,
            "reason": self.reason,
            "criteria": {k: v.to_dict() for k, v in self.criteria.items()},
        }
