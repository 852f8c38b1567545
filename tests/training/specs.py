"""Rubric specs shared by the training tests (no Django here): the demo's arithmetic rubric, as webapp/demo/seed.py
seeds it."""

ARITHMETIC_CRITERIA = [
    {"key": "correct", "title": "Correct final answer", "kind": "match", "weight": 1.0, "extract": "answer_tag",
     "mode": "numeric", "tolerance": 0.0},
    {"key": "format", "title": "Answer inside <answer> tags", "kind": "format", "weight": 0.25, "check": "answer_tag"},
]


def arithmetic_spec(*extra: dict) -> dict:
    """The arithmetic rubric, with `extra` criteria after its two (a fresh copy each call)."""
    return {"criteria": [dict(c) for c in ARITHMETIC_CRITERIA] + [dict(c) for c in extra]}
