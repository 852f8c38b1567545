"""Judge output parsing: structured JSON first, then tolerant fallbacks; never raises on model output.

    parse_verdicts(text, criteria) -> dict[key, ParsedVerdict]
    parse_group_verdicts(text, criteria, n_rollouts) -> dict[(rollout_index, key), ParsedVerdict]   # 0-based index
    match_choice(verdict, labels) -> int | None

Accepted shapes, in order: {"verdicts": [{"key", "rationale", "verdict"}]} (what structured output returns), the
same inside a ```json fence or surrounded by prose, {"verdicts": {key: verdict}}, a bare {"rationale", "verdict"}
for a single criterion, then plain text such as "Verdict: yes" / "**Score:** 7/10" (per criterion section when several
criteria share a call). A verdict that cannot be mapped gives score None with an `error` saying why.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from training.rubrics.spec import JudgeCriterion

_KEY_FIELDS = ("key", "name", "criterion", "criterion_key")
_ROLLOUT_FIELDS = ("rollout", "rollout_id", "rollout_index", "response", "index", "id")
_RATIONALE_FIELDS = ("rationale", "reason", "reasoning", "explanation", "justification", "analysis")
_VERDICT_FIELDS = ("verdict", "answer", "choice", "label", "score", "rating", "grade", "final_answer")
_NEGATIONS = ("not", "no", "isn't", "is not", "never", "hardly", "barely")
_VERDICT_LINE = re.compile(
    r"(?:final\s+)?(?:verdict|answer|choice|score|rating|grade|label)\s*\**\s*[:=\-]\s*\**\s*(.+)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)


@dataclass
class ParsedVerdict:
    score: float | None
    choice: str | None = None  # the verdict as the judge wrote it
    rationale: str | None = None
    error: str | None = None


def _norm(text: str) -> str:
    text = text.strip().strip("*_`\"' \t\n").strip()
    text = text.rstrip(".!,;:").strip().strip("*_`\"'").strip()
    return re.sub(r"\s+", " ", text).lower()


@functools.lru_cache(maxsize=1024)
def _norm_cached(text: str) -> str:
    # Labels and criterion titles: the same few strings for every verdict of a job.
    return _norm(text)


def match_choice(verdict: str, labels: list[str]) -> int | None:
    """Map a verdict to a label index; None when it matches none or is ambiguous (never guess on a judge's output)."""
    v = _norm(verdict)
    normalized = [_norm_cached(label) for label in labels]
    if v in normalized:
        return normalized.index(v)
    found: list[tuple[int, int, int]] = []  # (label index, start, end)
    for i, label in enumerate(normalized):
        for m in re.finditer(r"(?<![\w-])" + re.escape(label) + r"(?![\w-])", v):
            before = v[: m.start()].rstrip()
            negated = any(before.endswith(neg) for neg in _NEGATIONS) and not any(
                label.startswith(neg) for neg in _NEGATIONS
            )
            if not negated:
                found.append((i, m.start(), m.end()))
    # A label found inside a longer label's match ("correct" in "partially correct") is not a separate answer.
    kept = {
        i
        for i, s, e in found
        if not any(j != i and s2 <= s and e <= e2 and (e2 - s2) > (e - s) for j, s2, e2 in found)
    }
    return kept.pop() if len(kept) == 1 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = re.search(r"-?\d+(?:\.\d+)?", value)
        return float(m.group(0)) if m else None
    return None


def score_verdict(criterion: JudgeCriterion, verdict: Any) -> ParsedVerdict:
    if verdict is None or (isinstance(verdict, str) and not verdict.strip()):
        return ParsedVerdict(None, None, error="empty verdict")
    text = verdict if isinstance(verdict, str) else json.dumps(verdict)
    if criterion.choices is not None:
        labels = [c.label for c in criterion.choices]
        index = match_choice(text, labels)
        if index is None and isinstance(verdict, int) and not isinstance(verdict, bool):
            # Some judges answer with the 1-based position of the label.
            index = verdict - 1 if 1 <= verdict <= len(labels) else None
        if index is None:
            return ParsedVerdict(
                None, text, error=f"verdict {text[:80]!r} matches none of {labels} unambiguously"
            )
        return ParsedVerdict(criterion.choice_score(index), labels[index])
    assert criterion.scale is not None
    number = _number(verdict)
    low, high = criterion.scale.min, criterion.scale.max
    if number is None:
        return ParsedVerdict(None, text, error=f"verdict {text[:80]!r} is not a number in {low:g}..{high:g}")
    if not low <= number <= high:
        return ParsedVerdict(None, text, error=f"verdict {number:g} is outside the scale {low:g}..{high:g}")
    return ParsedVerdict((number - low) / (high - low), f"{number:g}")


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return False, None


def _json_candidates(text: str) -> Iterator[Any]:
    """JSON values in the text, most likely first; lazy, because the first one is almost always the answer."""
    for source in (text, *_FENCE.findall(text)):
        ok, value = _loads(source)
        if ok:
            yield value
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        yield value


def _first_field(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    lowered = {str(k).lower(): v for k, v in obj.items()}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _entries(value: Any, keys: list[str]) -> list[dict[str, Any]]:
    """Flatten the many shapes judges produce into [{key?, rollout?, rationale?, verdict}]."""
    if isinstance(value, list):
        return [e for item in value for e in _entries(item, keys)] if value else []
    if not isinstance(value, dict):
        return []
    verdicts = _first_field(value, ("verdicts", "scores", "results", "grades", "criteria", "evaluations"))
    if isinstance(verdicts, list):
        return [e for item in verdicts for e in _entries(item, keys)]
    if isinstance(verdicts, dict):
        value = verdicts
    verdict = _first_field(value, _VERDICT_FIELDS)
    if verdict is not None and not isinstance(verdict, dict | list):
        return [
            {
                "key": _first_field(value, _KEY_FIELDS),
                "rollout": _first_field(value, _ROLLOUT_FIELDS),
                "rationale": _first_field(value, _RATIONALE_FIELDS),
                "verdict": verdict,
            }
        ]
    # {"correct": "yes", "style": {"rationale": ..., "verdict": ...}}
    entries = []
    for k, v in value.items():
        if str(k) in keys:
            if isinstance(v, dict):
                entries += [{**e, "key": e.get("key") or k} for e in _entries(v, keys)]
            else:
                entries.append({"key": k, "rollout": None, "rationale": None, "verdict": v})
    return entries


def _key_of(entry: dict[str, Any], criteria: list[JudgeCriterion]) -> str | None:
    raw = entry.get("key")
    if raw is None:
        return None
    name = _norm(str(raw)).strip("`")
    for c in criteria:
        if name in (c.key, _norm_cached(c.title)):
            return c.key
    return None


def _text_sections(text: str, names: list[str]) -> dict[str, str]:
    """Split prose into the part after each mention of a name up to the next name's mention."""
    hits = []
    for name in names:
        for m in re.finditer(r"(?<![\w])`?" + re.escape(name) + r"`?(?![\w])", text, re.IGNORECASE):
            hits.append((m.start(), name))
    hits.sort()
    sections: dict[str, str] = {}
    for i, (start, name) in enumerate(hits):
        end = hits[i + 1][0] if i + 1 < len(hits) else len(text)
        sections[name] = sections.get(name, "") + "\n" + text[start:end]
    return sections


def _verdict_from_prose(text: str, criterion: JudgeCriterion) -> tuple[str | None, str | None]:
    matches = list(_VERDICT_LINE.finditer(text))
    if matches:
        last = matches[-1]
        verdict = last.group(1).strip().splitlines()[0]
        return verdict, text[: last.start()].strip().strip("*#").strip() or None
    stripped = text.strip()
    if criterion.choices is not None and stripped:
        # A bare label on the last line ("...\nCorrect"); only a short line, so JSON debris or a sentence that
        # merely mentions a label is not mistaken for a verdict.
        last_line = stripped.splitlines()[-1]
        short = len(last_line) <= 60 and not re.search(r"[{}\[\]\"]", last_line)
        if short and match_choice(last_line, [c.label for c in criterion.choices]) is not None:
            return last_line, stripped[: -len(last_line)].strip() or None
    return None, None


def parse_verdicts(text: str | None, criteria: list[JudgeCriterion]) -> dict[str, ParsedVerdict]:
    keys = [c.key for c in criteria]
    if not text or not text.strip():
        return {k: ParsedVerdict(None, error="the judge returned an empty response") for k in keys}
    found: dict[str, dict[str, Any]] = {}
    for candidate in _json_candidates(text):
        entries = _entries(candidate, keys)
        if not entries:
            continue
        for position, entry in enumerate(entries):
            key = _key_of(entry, criteria)
            if key is None and len(entries) == len(criteria):
                key = keys[position]  # unnamed entries in criterion order
            if key is not None and key not in found:
                found[key] = entry
        if len(found) == len(keys):
            break
    results: dict[str, ParsedVerdict] = {}
    by_key = {c.key: c for c in criteria}
    sections = _text_sections(text, keys) if len(criteria) > 1 else {keys[0]: text}
    for key in keys:
        criterion = by_key[key]
        if key in found:
            parsed = score_verdict(criterion, found[key].get("verdict"))
            rationale = found[key].get("rationale")
            parsed.rationale = str(rationale) if rationale is not None else None
        else:
            verdict, rationale = _verdict_from_prose(sections.get(key, ""), criterion)
            if verdict is None:
                results[key] = ParsedVerdict(
                    None, error=f"no verdict for criterion {key!r} in the judge's response"
                )
                continue
            parsed = score_verdict(criterion, verdict)
            parsed.rationale = rationale
        results[key] = parsed
    return results


def _rollout_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = re.search(r"\d+", value)
        return int(m.group(0)) if m else None
    return None


def parse_group_verdicts(
    text: str | None, criteria: list[JudgeCriterion], n_rollouts: int
) -> dict[tuple[int, str], ParsedVerdict]:
    """Verdicts for every (rollout, criterion) of a group call; rollouts are numbered from 1 in the prompt."""
    keys = [c.key for c in criteria]
    wanted = [(i, k) for i in range(n_rollouts) for k in keys]
    if not text or not text.strip():
        return {w: ParsedVerdict(None, error="the judge returned an empty response") for w in wanted}
    found: dict[tuple[int, str], dict[str, Any]] = {}
    for candidate in _json_candidates(text):
        entries = _entries(candidate, keys)
        for position, entry in enumerate(entries):
            number = _rollout_number(entry.get("rollout"))
            key = _key_of(entry, criteria) or (keys[0] if len(keys) == 1 else None)
            if number is None and len(entries) == len(wanted):
                number, key = position // len(keys) + 1, keys[position % len(keys)]
            if number is not None and key is not None and 1 <= number <= n_rollouts:
                found.setdefault((number - 1, key), entry)
        if len(found) == len(wanted):
            break
    by_key = {c.key: c for c in criteria}
    sections = _text_sections(text, [f"rollout {i + 1}" for i in range(n_rollouts)])
    results: dict[tuple[int, str], ParsedVerdict] = {}
    for index, key in wanted:
        criterion = by_key[key]
        if (index, key) in found:
            entry = found[(index, key)]
            parsed = score_verdict(criterion, entry.get("verdict"))
            rationale = entry.get("rationale")
            parsed.rationale = str(rationale) if rationale is not None else None
        else:
            section = sections.get(f"rollout {index + 1}", "")
            if len(keys) > 1:
                section = _text_sections(section, keys).get(key, "")
            verdict, rationale = _verdict_from_prose(section, criterion)
            if verdict is None:
                results[(index, key)] = ParsedVerdict(
                    None,
                    error=f"no verdict for rollout {index + 1}, criterion {key!r} in the judge's response",
                )
                continue
            parsed = score_verdict(criterion, verdict)
            parsed.rationale = rationale
        results[(index, key)] = parsed
    return results
