"""Context transfer: fit a conversation into a smaller window.

The extractive trim, exactly: the system message(s) are always kept, and so
are the latest ``keep_last`` messages; older turns are then added back newest
first while the total (counted with the shipped tokenizer, see
``mixroute.tokens``) stays within the budget. Dropped turns are replaced by one
system note saying how many were left out, so the model knows the history is
partial. The kept messages are never cut: when they alone exceed the budget
(``trim_floor``), the model cannot serve the request and is skipped. A tool
result is never kept without the assistant message that called it: an
orphaned tool message is dropped too.

A route may name a ``summariser`` model; the gateway may pass a
``Summariser`` to condense the dropped turns instead of only noting them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from mixroute.tokens import (
    MESSAGE_OVERHEAD,
    count_message_tokens,
)

Message = Mapping[str, Any]
# Tokens the "earlier messages were left out" note takes.
_NOTE_COST = MESSAGE_OVERHEAD + 16
# (model name, dropped messages) -> a summary text. Optional hook.
Summariser = Callable[[str, Sequence[Message]], Awaitable[str]]


def trim_messages(
    messages: Sequence[Message], budget: int, keep_last: int = 2
) -> tuple[list[dict[str, Any]], int]:
    """The messages cut to ``budget`` prompt tokens and how many were dropped."""
    msgs = [dict(m) for m in messages]
    if count_message_tokens(msgs) <= budget:
        return msgs, 0
    system = [m for m in msgs if m.get("role") == "system"]
    rest = [m for m in msgs if m.get("role") != "system"]
    kept = rest[-keep_last:] if keep_last else []
    older = rest[: len(rest) - len(kept)]
    note_cost = _NOTE_COST
    used = count_message_tokens(system) + count_message_tokens(kept) + note_cost
    added: list[dict[str, Any]] = []
    for m in reversed(older):
        cost = count_message_tokens([m])
        if used + cost > budget:
            break
        added.insert(0, m)
        used += cost
    body = _drop_orphans(added + kept)
    dropped = len(rest) - len(body)
    note = {
        "role": "system",
        "content": f"[{dropped} earlier messages were left out to fit the "
        "context window.]",
    }
    head = system + ([note] if dropped else [])
    return head + body, dropped


def trim_floor(messages: Sequence[Message], keep_last: int = 2) -> int:
    """The fewest prompt tokens the trim can reach: system messages, the
    latest ``keep_last`` messages and the note."""
    system = [m for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    kept = _drop_orphans([dict(m) for m in rest[-keep_last:]])
    if len(kept) == len(rest):
        return count_message_tokens(messages)
    return count_message_tokens(system) + count_message_tokens(kept) + _NOTE_COST


def _drop_orphans(body: list[dict[str, Any]]) -> list[dict[str, Any]]:
    while body and body[0].get("role") == "tool":
        body = body[1:]
    return body


async def condense_messages(
    messages: Sequence[Message],
    budget: int,
    keep_last: int,
    summarise: Summariser | None = None,
    summariser_model: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """``trim_messages``, then, when a summariser is given, the note about the
    dropped turns replaced by their summary (if it fits the budget; otherwise
    the plain note stays). Returns the messages and how many were dropped."""
    out, dropped = trim_messages(messages, budget, keep_last)
    if not dropped or summarise is None or summariser_model is None:
        return out, dropped
    system = [dict(m) for m in messages if m.get("role") == "system"]
    body = out[len(system) + 1 :]
    rest = [m for m in messages if m.get("role") != "system"]
    summary = await summarise(summariser_model, rest[: len(rest) - len(body)])
    note = {
        "role": "system",
        "content": f"Summary of {dropped} earlier messages: {summary.strip()}",
    }
    condensed = [*system, note, *body]
    if count_message_tokens(condensed) <= budget:
        return condensed, dropped
    return out, dropped
