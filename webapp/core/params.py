"""The one place ids and numbers from query strings, form fields and JSON bodies are parsed.

    parse_id(value, field=...) -> int | None          # '' / None -> None; a positive database id, else 400
    parse_ids(values, field=...) -> list[int]
    parse_int(value, field=..., default=None, minimum=None, maximum=None) -> int | None
    parse_float(value, field=..., default=None, minimum=None, maximum=None) -> float | None   # finite only

`str.isdigit()` is not a parser: '²' and '٣' pass it and break `int()`, and a 30-digit id passes both and overflows
the database's bigint. Anything that is not a plain ASCII number in range is an ApplicationError (400) naming the
field, which the views and the API turn into a clear answer, never a 500.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from webapp.core.errors import ApplicationError

MAX_ID = 2**63 - 1  # BigAutoField
_INT = re.compile(r"[+-]?[0-9]{1,19}")
_FLOAT = re.compile(r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,3})?")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return value.strip()
    return "\0"  # lists, dicts: never a number


def parse_int(value: Any, *, field: str, default: int | None = None, minimum: int | None = None,
              maximum: int | None = None) -> int | None:
    text = _text(value)
    if text is None or text == "":
        return default
    if isinstance(value, bool | float) or not _INT.fullmatch(text):
        raise ApplicationError(f"{field}: {_show(value)} is not a whole number.", field=field)
    number = int(text)
    low = -MAX_ID if minimum is None else minimum
    high = MAX_ID if maximum is None else maximum
    if not low <= number <= high:
        raise ApplicationError(f"{field}: {number} is out of range ({low}..{high}).", field=field)
    return number


def parse_id(value: Any, *, field: str) -> int | None:
    text = _text(value)
    if text is not None and text != "" and not (_INT.fullmatch(text) and text.lstrip("+").isdecimal()):
        raise ApplicationError(f"{field}: {_show(value)} is not an id.", field=field)
    return parse_int(value, field=field, minimum=1, maximum=MAX_ID)


def parse_ids(values: Iterable[Any], *, field: str) -> list[int]:
    ids = [parse_id(v, field=field) for v in values]
    return [i for i in ids if i is not None]


def parse_float(value: Any, *, field: str, default: float | None = None, minimum: float | None = None,
                maximum: float | None = None) -> float | None:
    text = _text(value)
    if text is None or text == "":
        return default
    if isinstance(value, bool) or not _FLOAT.fullmatch(text):
        raise ApplicationError(f"{field}: {_show(value)} is not a number.", field=field)
    number = float(text)
    if not math.isfinite(number):
        raise ApplicationError(f"{field}: {_show(value)} is not a finite number.", field=field)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        bounds = f"{'' if minimum is None else f'{minimum:g}'}..{'' if maximum is None else f'{maximum:g}'}"
        raise ApplicationError(f"{field}: {number:g} is out of range ({bounds}).", field=field)
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
