"""Answer extraction and format checks on completion text. Pure functions; a failure is a value, never an exception.

extract_answer(text, how) -> Extraction(value: str | None, reason: str)
check_format(text, check) -> tuple[bool, str]
parse_number(text) -> float | None
normalize_answer(text) -> str
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_NUMBER_RE = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")
_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Extraction:
    value: str | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.value is not None


def _boxed_contents(text: str) -> list[str]:
    """Contents of every \\boxed{...} / \\fbox{...}, with nested braces balanced (regex cannot do this)."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append(text[start:i])
                    break
    return found


def find_json(text: str) -> tuple[object, str] | None:
    """The last fenced ```json block that parses, else the first balanced JSON object/array in the text."""
    for block in reversed(_FENCE_RE.findall(text)):
        try:
            return json.loads(block), block.strip()
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        return value, text[match.start() : end]
    return None


def extract_answer(text: str, how: str) -> Extraction:
    if how == "full":
        stripped = text.strip()
        return (
            Extraction(stripped, "whole completion") if stripped else Extraction(None, "completion is empty")
        )
    if how == "answer_tag":
        blocks = _ANSWER_RE.findall(text)
        if not blocks:
            return Extraction(None, "no <answer>…</answer> block in the completion")
        # The last block wins: models often draft an answer and then correct it.
        value = blocks[-1].strip()
        return (
            Extraction(value, "last <answer> block") if value else Extraction(None, "<answer> block is empty")
        )
    if how == "boxed":
        boxes = [b.strip() for b in _boxed_contents(text)]
        if not boxes or not boxes[-1]:
            return Extraction(None, "no non-empty \\boxed{…} in the completion")
        return Extraction(boxes[-1], "last \\boxed{} value")
    if how == "last_number":
        numbers = _NUMBER_RE.findall(text)
        if not numbers:
            return Extraction(None, "no number in the completion")
        return Extraction(numbers[-1].replace(",", ""), "last number")
    if how == "json_block":
        found = find_json(text)
        if found is None:
            return Extraction(None, "no parseable JSON object, array or ```json block")
        return Extraction(found[1], "JSON block")
    raise ValueError(f"unknown extraction {how!r}")


def parse_number(text: str) -> float | None:
    """'1,234', '$5.00', '50%', '3/4', '-2e3' → float; otherwise the last number in the text; None if none."""
    cleaned = text.strip().strip("$").replace(",", "").replace("\\!", "").strip()
    cleaned = re.sub(r"^\\?\$|\\?\$$|%$|\\%$", "", cleaned).strip()
    fraction = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)", cleaned)
    if fraction and float(fraction.group(2)) != 0:
        return float(fraction.group(1)) / float(fraction.group(2))
    try:
        return float(cleaned)
    except ValueError:
        pass
    numbers = _NUMBER_RE.findall(text)
    if not numbers:
        return None
    try:
        return float(numbers[-1].replace(",", ""))
    except ValueError:
        return None


def normalize_answer(text: str) -> str:
    """Case, surrounding whitespace/quotes/dollar signs, inner whitespace runs and a final period don't matter."""
    value = text.strip()
    value = re.sub(r"\\text\{(.*?)\}", r"\1", value)
    value = value.strip().strip("$").strip().strip("\"'`").strip()
    value = value.rstrip(".").strip()
    return re.sub(r"\s+", " ", value).lower()


def check_format(text: str, check: str) -> tuple[bool, str]:
    if check == "think_answer_tags":
        counts = {
            tag: len(re.findall(tag, text, re.IGNORECASE))
            for tag in ("<think>", "</think>", "<answer>", "</answer>")
        }
        wrong = [f"{tag} appears {n}×" for tag, n in counts.items() if n != 1]
        if wrong:
            return False, "each tag must appear exactly once: " + ", ".join(wrong)
        lower = text.lower()
        positions = [lower.index(t) for t in ("<think>", "</think>", "<answer>", "</answer>")]
        if positions != sorted(positions):
            return False, "expected <think>…</think> then <answer>…</answer>, in that order"
        if not _ANSWER_RE.findall(text)[0].strip():
            return False, "<answer> block is empty"
        return True, "<think> then <answer>, each once"
    if check == "answer_tag":
        blocks = _ANSWER_RE.findall(text)
        if len(blocks) != 1:
            return False, f"expected exactly one <answer>…</answer> block, found {len(blocks)}"
        if not blocks[0].strip():
            return False, "<answer> block is empty"
        return True, "one non-empty <answer> block"
    if check in ("boxed", "last_number", "json_block"):
        extraction = extract_answer(text, check)
        return extraction.ok, extraction.reason
    raise ValueError(f"unknown format check {check!r}")
