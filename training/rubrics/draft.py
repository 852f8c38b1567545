"""AI-drafted rubrics: the prompt that asks an LM for criteria and per-example checklists, and a parser that turns
whatever it answers into a rubric spec dict (no Django).

    messages = draft_messages(instructions="...", examples=[DraftExample(id="ex-1", prompt="...", reference="4")])
    proposal = parse_draft(text, examples=[...], has_reference=True)
    proposal.spec        # {"criteria": [...]} of judge criteria (+ a match/"correct" criterion is never guessed)
    proposal.checklists  # {"ex-1": ["States the final answer", ...]}
    proposal.notes       # what the parser had to repair or invent, shown to the user

Small models (the bundled 135M one) write poor JSON: code fences, single quotes, trailing commas, truncated output,
bulleted lists instead of JSON. The parser takes, in order: a JSON object (repaired if needed), bullet or numbered
lines, and finally a skeleton built from the task itself, so a draft always comes back as a spec that the caller
then validates with the rubric engine. Text from the model never reaches a Jinja template unescaped: braces are
removed from everything it writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_CRITERIA = 8
MIN_CRITERIA = 3
MAX_CHECKLIST_ITEMS = 8
MAX_TITLE_CHARS = 120
MAX_TEXT_CHARS = 400

SYSTEM_PROMPT = (
    "You write grading rubrics for evaluating AI answers. A rubric is a short list of independent yes/no checks "
    "that a careful grader can verify by reading one answer. Reply with JSON only."
)

JSON_SHAPE = (
    '{"criteria": [{"title": "<short name>", "question": "<yes/no question about the response>", '
    '"weight": <1 to 3>}], "checklists": {"<example id>": ["<check specific to that example>", ...]}}'
)


@dataclass(frozen=True)
class DraftExample:
    id: str
    prompt: str
    reference: str = ""


@dataclass
class DraftProposal:
    spec: dict[str, Any]
    checklists: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: str = "json"  # json | lines | skeleton: how much of the model's answer was usable

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "checklists": self.checklists, "notes": self.notes, "source": self.source}


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def draft_messages(*, instructions: str, examples: list[DraftExample], system_prompt: str = "") -> list[dict[str, str]]:
    """Chat messages asking for criteria (rubrics-as-rewards / checklist style) and one checklist per example."""
    parts = ["Task instructions given to the AI:", _clip(instructions or "(none)", 2000)]
    if system_prompt:
        parts += ["System prompt given to the AI:", _clip(system_prompt, 1000)]
    for example in examples:
        parts.append(f"Example id {example.id}:\nPrompt: {_clip(example.prompt, 600)}")
        if example.reference:
            parts.append(f"Reference answer: {_clip(example.reference, 400)}")
    parts.append(
        "Write 3 to 6 criteria that separate good answers from bad ones for this task (correctness first, then "
        "completeness, format, clarity), and for each example id a checklist of 2 to 4 concrete checks that a "
        f"good answer to that example passes. Reply with JSON only, in this shape:\n{JSON_SHAPE}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


# --- parsing ----------------------------------------------------------------------------------------------------

_FENCE_RE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_TRAILING_COMMA_RE = re.compile(r",\s*([}\]])")
_BULLET_RE = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])\s+(.+?)\s*$")
_KEY_CLEAN_RE = re.compile(r"[^a-z0-9]+")
_BRACES_RE = re.compile(r"[{}]")
_TITLE_WORDS = ("title", "name", "criterion", "label", "check", "item", "text")
_QUESTION_WORDS = ("question", "description", "check", "prompt", "text")


def _closers(prefix: str) -> str | None:
    """The brackets that close what `prefix` left open; None when it ends inside a string."""
    stack: list[str] = []
    in_string = escaped = False
    for char in prefix:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append("]" if char == "[" else "}")
        elif char in "]}" and stack:
            stack.pop()
    return None if in_string else "".join(reversed(stack))


def _close_truncated(text: str) -> list[str]:
    """Versions of a cut-off answer that end after its last complete item, with the open brackets closed."""
    out = []
    cuts = [i for i, char in enumerate(text) if char in ",}]"][-200:]
    for i in reversed(cuts):
        prefix = text[:i] if text[i] == "," else text[: i + 1]
        closers = _closers(prefix)
        if closers is not None:
            out.append(prefix + closers)
        if len(out) >= 8:
            break
    return out


def _repairs(candidate: str) -> list[str]:
    fixed = _TRAILING_COMMA_RE.sub(r"\1", candidate)
    out = [candidate, fixed]
    if "'" in fixed and '"' not in fixed:
        out.append(fixed.replace("'", '"'))
    out.extend(_TRAILING_COMMA_RE.sub(r"\1", closed) for closed in _close_truncated(fixed))
    return out


def loads_lenient(text: str) -> tuple[Any, bool] | None:
    """The first JSON object or array in `text`, repairing fences, trailing commas, single quotes and truncation.
    Returns (value, repaired) or None."""
    candidates = [m.strip() for m in _FENCE_RE.findall(text) if m.strip()]
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0:
        candidates.append(text[start:].strip())
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for attempt, repaired_text in enumerate(_repairs(candidate)):
            begin = min((i for i in (repaired_text.find("{"), repaired_text.find("[")) if i >= 0), default=-1)
            if begin < 0:
                continue
            try:
                value, _ = decoder.raw_decode(repaired_text, begin)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict | list):
                return value, attempt > 0
    return None


def slug_key(text: str, taken: set[str]) -> str:
    """A criterion key (`^[a-z][a-z0-9_]{0,63}$`) from a title, unique among `taken`."""
    base = _KEY_CLEAN_RE.sub("_", text.lower()).strip("_")[:40].strip("_") or "criterion"
    if not base[0].isalpha():
        base = f"c_{base}"[:40]
    key, n = base, 2
    while key in taken:
        key = f"{base}_{n}"
        n += 1
    taken.add(key)
    return key


def _safe_text(value: Any, limit: int) -> str:
    # Questions are Jinja templates: model text must not be able to open an expression or a block.
    return _clip(_BRACES_RE.sub("", str(value or "")).replace("{%", "").strip(), limit)


def usable_text(text: str) -> bool:
    """Reject what small models produce when they degenerate: numbering, punctuation, one phrase repeated."""
    letters = sum(c.isalpha() for c in text)
    if letters < 3 or letters < len(text.replace(" ", "")) * 0.5:
        return False
    words = text.lower().split()
    return len(words) < 6 or len(set(words)) >= len(words) * 0.5


def _first(item: dict[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        for key, value in item.items():
            if key.lower() == name and isinstance(value, str | int | float) and str(value).strip():
                return str(value)
    return ""


def _weight(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 1.0
    if number != number or number <= 0:  # NaN or non-positive: every drafted criterion counts
        return 1.0
    return float(min(number, 5.0))


def judge_criterion(title: str, question: str, weight: float, taken: set[str], *, use_reference: bool) -> dict[str, Any]:
    title = _safe_text(title, MAX_TITLE_CHARS) or "Criterion"
    question = _safe_text(question, MAX_TEXT_CHARS)
    if not question:
        question = f"Does the response satisfy this criterion: {title}?"
    return {
        "key": slug_key(title, taken),
        "title": title,
        "kind": "judge",
        "weight": round(weight, 3),
        "question": question,
        "choices": [{"label": "no", "description": ""}, {"label": "yes", "description": ""}],
        "use_reference": use_reference,
    }


def _criteria_items(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for name in ("criteria", "rubric", "rubrics", "items", "checks", "checklist"):
            for key, inner in value.items():
                if key.lower() == name and isinstance(inner, list):
                    return inner
                if key.lower() == name and isinstance(inner, dict):
                    return _criteria_items(inner)
    return []


def _checklists(value: Any, examples: list[DraftExample]) -> dict[str, list[str]]:
    found: Any = None
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.lower() in ("checklists", "checklist", "examples", "per_example"):
                found = inner
    ids = [e.id for e in examples]
    raw: dict[str, Any] = {}
    if isinstance(found, dict):
        raw = {str(k): v for k, v in found.items()}
    elif isinstance(found, list):
        # A list in example order, or a list of {"id": ..., "checklist": [...]}.
        for position, entry in enumerate(found):
            if isinstance(entry, dict):
                entry_id = _first(entry, ("id", "example", "example_id"))
                items = next((v for v in entry.values() if isinstance(v, list)), [])
                if entry_id:
                    raw[entry_id] = items
            elif position < len(ids):
                raw[ids[position]] = entry
    out: dict[str, list[str]] = {}
    for example_id in ids:
        entry = raw.get(example_id)
        if entry is None:
            entry = next((v for k, v in raw.items() if k.strip().lower() == example_id.lower()), None)
        items = entry if isinstance(entry, list) else [entry] if isinstance(entry, str) else []
        texts = []
        for item in items:
            text = _first(item, _TITLE_WORDS) if isinstance(item, dict) else str(item) if isinstance(item, str | int | float) else ""
            text = _safe_text(text, MAX_TEXT_CHARS)
            if text and text not in texts:
                texts.append(text)
        if texts:
            out[example_id] = texts[:MAX_CHECKLIST_ITEMS]
    return out


def skeleton_criteria(*, instructions: str, has_reference: bool) -> list[dict[str, Any]]:
    """A sane starting point when the model's answer has nothing usable."""
    taken: set[str] = set()
    task = _safe_text(instructions, 200).rstrip(" .?!:;") or "what the prompt says"
    criteria = []
    if has_reference:
        criteria.append(judge_criterion(
            "Matches the reference answer",
            "Does the response reach the same final answer as the reference answer?", 2.0, taken, use_reference=True))
    criteria += [
        judge_criterion("Follows the instructions", f"Does the response do what the task asks: {task}?", 1.0,
                        taken, use_reference=False),
        judge_criterion("Complete", "Does the response address every part of the prompt?", 1.0, taken,
                        use_reference=False),
        judge_criterion("Clear and concise", "Is the response clear and free of irrelevant text?", 0.5, taken,
                        use_reference=False),
    ]
    return criteria


def parse_draft(
    text: str, *, examples: list[DraftExample], instructions: str = "", has_reference: bool = False,
) -> DraftProposal:
    """Turn the model's answer into a spec dict with judge criteria (yes/no), plus per-example checklists."""
    notes: list[str] = []
    parsed = loads_lenient(text or "")
    value, repaired = parsed if parsed is not None else (None, False)
    if repaired:
        notes.append("The model's JSON was malformed (truncated, trailing commas or quotes) and was repaired.")
    taken: set[str] = set()
    criteria: list[dict[str, Any]] = []
    mentions_reference = re.compile(r"\breference\b|\bexpected answer\b|\bcorrect answer\b", re.IGNORECASE)
    for item in _criteria_items(value)[: MAX_CRITERIA * 2]:
        if isinstance(item, dict):
            title = _first(item, _TITLE_WORDS) or _first(item, _QUESTION_WORDS)
            question = _first(item, _QUESTION_WORDS)
            weight = _weight(next((v for k, v in item.items() if k.lower() in ("weight", "points", "score")), 1))
        elif isinstance(item, str | int | float):
            title, question, weight = str(item), "", 1.0
        else:
            continue
        if not usable_text(_safe_text(title, MAX_TITLE_CHARS)) or any(
                _safe_text(title, MAX_TITLE_CHARS) == c["title"] for c in criteria):
            continue
        uses_reference = has_reference and bool(mentions_reference.search(f"{title} {question}"))
        criteria.append(judge_criterion(title, question, weight, taken, use_reference=uses_reference))
        if len(criteria) == MAX_CRITERIA:
            break
    source = "json"
    if not criteria:
        lines = [m.group(1) for line in (text or "").splitlines() if (m := _BULLET_RE.match(line))]
        for line in lines[:MAX_CRITERIA]:
            title = re.sub(r"\*\*(.+?)\*\*", r"\1", line).strip(" :*")
            if usable_text(_safe_text(title, MAX_TITLE_CHARS)) and not any(
                    _safe_text(title, MAX_TITLE_CHARS) == c["title"] for c in criteria):
                criteria.append(judge_criterion(title, "", 1.0, taken, use_reference=False))
        if criteria:
            source = "lines"
            notes.append("The model did not answer in JSON; its list items were turned into yes/no criteria.")
    if 0 < len(criteria) < MIN_CRITERIA:
        titles = {c["title"].lower() for c in criteria}
        extra = [c for c in skeleton_criteria(instructions=instructions, has_reference=has_reference)
                 if c["title"].lower() not in titles][: MIN_CRITERIA - len(criteria)]
        for c in extra:
            c["key"] = slug_key(c["title"], taken)
        criteria += extra
        notes.append(f"The model proposed only {len(criteria) - len(extra)} usable criteria; "
                     f"{len(extra)} general ones were added.")
    if not criteria:
        source = "skeleton"
        criteria = skeleton_criteria(instructions=instructions, has_reference=has_reference)
        notes.append("The model's answer had no usable criteria; this is a starting skeleton built from the task. "
                     "Edit it, or draft again with a stronger endpoint.")
    checklists = _checklists(value, examples)
    from_reference = [e for e in examples if e.id not in checklists and e.reference.strip()]
    for example in from_reference:
        checklists[example.id] = [_safe_text(f"Reaches the reference answer: {example.reference}", MAX_TEXT_CHARS)]
    if from_reference:
        notes.append(f"The model wrote no checklist for {len(from_reference)} example(s) with a reference answer; "
                     "each got one item built from its reference.")
    missing = [e.id for e in examples if e.id not in checklists]
    if examples and missing:
        notes.append(f"No checklist for {len(missing)} of {len(examples)} examples ({', '.join(missing[:5])}).")
    return DraftProposal(spec={"criteria": criteria}, checklists=checklists, notes=notes, source=source)
