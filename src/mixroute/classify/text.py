"""Turning a request into the bounded window of text that gets classified.

- Only the last user turn is classified; the turn before it (any role) is
  prepended, clipped short, as light context, so "and in Python?" after a
  coding question stays a coding question while the new turn dominates.
- Long text keeps its head and tail (instructions usually sit at the start or
  the end of a paste), so a 1 MB prompt costs what ``max_chars`` costs.
- Control characters and invalid surrogates are dropped so binary junk is
  just an unusual string, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_SPACE = re.compile(r"[ \t\f\v]+")
_PRIVATE = re.compile(r"[\ue000-\uf8ff\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\ufeff\ufffd]")
_NEWLINES = re.compile(r"\n{3,}")
CONTEXT_CHARS = 300


def window(text: str, max_chars: int) -> str:
    """The head (two thirds) and tail (one third) of ``text`` within ``max_chars``."""
    if len(text) <= max_chars:
        return text
    head = (max_chars * 2) // 3
    tail = max_chars - head
    return text[:head] + "\n…\n" + text[len(text) - tail :]


def clean(text: str, max_chars: int) -> str:
    """A bounded, printable, whitespace-normalised window of ``text``."""
    # Cut first so the work below is bounded whatever the input size.
    text = window(text, max_chars)
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub(" ", text)
    text = _SPACE.sub(" ", text)
    return _NEWLINES.sub("\n\n", text).strip()


def junk_share(text: str, max_chars: int) -> float:
    """Share of control, replacement or private-use characters in the window.

    Real prompts in any script have almost none; binary data read as text has
    about a quarter.
    """
    sample = window(text, max_chars)
    if not sample:
        return 0.0
    odd = len(_CONTROL.findall(sample)) + len(_PRIVATE.findall(sample))
    return odd / len(sample)


def cache_key(text: str) -> str:
    """The LRU key: case-folded text with all whitespace runs collapsed."""
    return " ".join(text.casefold().split())


def content_text(content: object) -> str:
    """The text of an OpenAI message ``content`` (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                value = part.get("text")
                if isinstance(value, str):
                    parts.append(value)
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def messages_text(messages: Sequence[Mapping[str, object]]) -> tuple[str, str]:
    """(last user turn, short context from the turn before it) of a messages list.

    With no user turn, the last message with text stands in for it.
    """
    # Anything but a message object is skipped: this runs before the request
    # is validated, and a malformed list gets its 400 from the validation.
    if len(messages) == 1:  # the usual single prompt, without the general pass
        m = messages[0]
        text = content_text(m.get("content")) if isinstance(m, Mapping) else ""
        return (text, "") if text.strip() else ("", "")
    turns = [
        (str(m.get("role", "")), content_text(m.get("content")))
        for m in messages
        if isinstance(m, Mapping)
    ]
    turns = [(role, text) for role, text in turns if text.strip()]
    if not turns:
        return "", ""
    last = max(
        (i for i, (role, _) in enumerate(turns) if role == "user"),
        default=len(turns) - 1,
    )
    context = ""
    if last > 0:
        prev_role, prev = turns[last - 1]
        if prev_role != "system" or last == 1:
            context = prev[-CONTEXT_CHARS:]
    return turns[last][1], context
