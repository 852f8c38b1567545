"""Decoding JSON that comes from outside (uploads, API bodies, pasted specs) with a nesting limit.

    loads(data, **json_kwargs) -> Any          # json.loads, but too-deep input is a json.JSONDecodeError
    check_depth(value) -> None                 # the same limit for a value decoded elsewhere (msgspec, DRF)
    DepthParser                                # DRF's JSONParser with the limit, refusing NUL and lone surrogates
    text_problem(value, raw=None) -> str | None  # "a NUL character" / "a lone surrogate" found in a decoded value

JSON nested 100,000 levels deep makes json.loads (and msgspec) raise RecursionError, which no caller expected: a
500. Values a few hundred levels deep decode, but then break whatever walks them recursively (templates, jsonb,
json.dumps). Everything that reads untrusted JSON goes through here; the error is a JSONDecodeError (a ValueError),
so each caller's existing handler names the line or field as for any other malformed JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_DEPTH = 64  # chat messages with tool calls nest about 8 levels; JSON schemas a few more


def _too_deep() -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", "", 0)


def _bracket_count(data: str | bytes | bytearray) -> int:
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def check_depth(value: Any) -> None:
    """Raise JSONDecodeError when lists/objects nest deeper than MAX_DEPTH (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise _too_deep()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def may_be_too_deep(data: str | bytes | bytearray) -> bool:
    """Cheap test on the raw text: fewer opening brackets than the limit cannot nest past it."""
    return _bracket_count(data) > MAX_DEPTH


def loads(data: str | bytes | bytearray, **kwargs: Any) -> Any:
    try:
        value = json.loads(data, **kwargs)
    except RecursionError:
        raise _too_deep() from None
    if may_be_too_deep(data):
        check_depth(value)
    return value


class DepthLimitedDecoder(json.JSONDecoder):
    """For json.loads(cls=...) callers such as Django's forms.JSONField."""

    def decode(self, s, *args, **kwargs):  # type: ignore[override]
        try:
            value = super().decode(s, *args, **kwargs)
        except RecursionError:
            raise _too_deep() from None
        if may_be_too_deep(s):
            check_depth(value)
        return value


# A NUL, or the escape of a NUL or of a surrogate, in raw JSON text: only then is the decoded value walked.
_SUSPECT_BYTES = re.compile(rb"\x00|\\u0000|\\u[dD][89a-fA-F]")
_SUSPECT_TEXT = re.compile(r"\x00|\\u0000|\\u[dD][89a-fA-F]")


def may_have_bad_text(raw: str | bytes | bytearray) -> bool:
    """Cheap test on raw JSON (or CSV) text: False means no NUL and no surrogate can come out of decoding it."""
    return bool((_SUSPECT_BYTES if isinstance(raw, bytes | bytearray) else _SUSPECT_TEXT).search(raw))


def text_problem(value: Any, raw: str | bytes | None = None) -> str | None:
    """What in a decoded value Postgres cannot store (a NUL character, a lone surrogate), or None. With the raw text
    it was decoded from, values whose text shows neither are not walked."""
    if raw is not None and not may_have_bad_text(raw):
        return None
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a lone surrogate (such as \\ud800)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def has_lone_surrogate(value: Any) -> bool:
    """True when a decoded value holds a string that cannot be UTF-8 (Postgres refuses it)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class DepthParser(JSONParser):
    """The API's JSON parser: DRF's, with the nesting limit and a 400 instead of a RecursionError."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_DEPTH} levels") from None
        try:
            check_depth(data)
        except json.JSONDecodeError as error:
            raise ParseError(f"JSON parse error - {error.msg}") from None
        # Postgres stores neither in text nor jsonb: refused here for every body, JSON-valued fields included.
        problem = text_problem(data)
        if problem is not None:
            raise ParseError(f"JSON parse error - the body contains {problem}, which cannot be stored")
        return data
