from __future__ import annotations

import json

from django import template
from django.utils.safestring import mark_safe

from webapp.rollouts.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> str:
    return mark_safe(render_markdown(text))  # noqa: S308 — sanitized by nh3 in render_markdown


@register.filter
def message_text(content) -> str:
    """Chat content may be a string or a list of parts ({'type': 'text', 'text': ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


@register.filter
def pretty_json(value) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


@register.filter
def first_total(rollout) -> float | None:
    scores = getattr(rollout, "selected_scores", None) or []
    return scores[0].total if scores else None
