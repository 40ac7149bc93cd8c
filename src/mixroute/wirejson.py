"""JSON on the request path: orjson first, the standard library as the referee.

Every routed request decodes the client's body and the upstream's answer and
encodes the upstream request; orjson does each several times faster than the
``json`` module. Where orjson refuses a document (a lone surrogate escape,
``NaN``, nesting past 1024 levels, invalid UTF-8, a non-string key) the
``json`` module decides instead, so what is accepted, and every error a client
sees, stays what the standard library gives. orjson reads an integer past 64
bits as a float, so a document with a run of 19 or more digits goes to the
``json`` module too (which keeps the integer exact), and so does one with
enough brackets to be nested past the json module's recursion limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19}")


# orjson reads nesting to 1024 levels; the json module stops where Python's
# recursion limit does (about 990 levels less the caller's stack). A document
# with this many brackets could be nested that deep, so the json module decides.
_MANY_BRACKETS = 512


def _orjson_may_decide(data: bytes | str) -> bool:
    if isinstance(data, bytes):
        long = _LONG_DIGITS.search(data) is not None
        brackets = data.count(b"[") + data.count(b"{")
    else:
        long = _LONG_DIGITS_TEXT.search(data) is not None
        brackets = data.count("[") + data.count("{")
    return not long and brackets <= _MANY_BRACKETS


def loads(data: bytes | str) -> Any:
    """Decode one JSON document; ``ValueError`` (the ``json`` module's) if bad."""
    value = loads_fast(data)
    # None: orjson left it to the json module (or the document is ``null``).
    return value if value is not None else json.loads(data)


def loads_event(text: str) -> Any:
    """``loads`` for one event of an upstream's stream, without the check for
    long integers: the event's own text is what goes on to the client, and the
    decoded value is only read (usage, finish reason, whether content began)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def loads_fast(data: bytes | str) -> Any:
    """``loads`` where orjson accepts the document as it is, else None (then the
    caller decodes it the slow way, with its own error messages). A JSON
    ``null`` also gives None."""
    if not _orjson_may_decide(data):
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``. Raises what ``json.dumps`` raises (for
    example ``UnicodeEncodeError`` for a lone surrogate, which has no UTF-8
    form); ``NaN`` and infinities become ``null``."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return text.encode()
