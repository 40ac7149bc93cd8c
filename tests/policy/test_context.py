"""The extractive trim that fits history into a smaller window."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from policy_helpers import classified, make_config, req

from mixroute.policy import PolicyEngine
from mixroute.policy.context import trim_floor, trim_messages
from mixroute.tokens import count_message_tokens

WORDS = " ".join(f"word{i}" for i in range(200))


def _conversation(turns: int) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        msgs.append({"role": "user", "content": f"question {i} {WORDS}"})
        msgs.append({"role": "assistant", "content": f"answer {i} {WORDS}"})
    msgs.append({"role": "user", "content": "and finally?"})
    return msgs


def test_short_history_is_untouched() -> None:
    msgs = _conversation(1)
    out, dropped = trim_messages(msgs, 10_000)
    assert out == msgs and dropped == 0


def test_trim_keeps_system_and_latest_turns_within_budget() -> None:
    msgs = _conversation(10)
    budget = count_message_tokens(msgs) // 3
    out, dropped = trim_messages(msgs, budget, keep_last=2)
    assert dropped > 0
    assert count_message_tokens(out) <= budget
    assert out[0] == msgs[0]
    assert out[1]["role"] == "system" and f"{dropped} earlier" in out[1]["content"]
    assert out[-2:] == msgs[-2:]
    # Kept history is the newest contiguous part.
    body = out[2:]
    assert body == msgs[len(msgs) - len(body) :]


def test_latest_turns_are_never_cut() -> None:
    msgs = _conversation(3)
    out, dropped = trim_messages(msgs, 150, keep_last=2)
    assert out[-2:] == msgs[-2:] and dropped == 5
    assert count_message_tokens(out) <= trim_floor(msgs, 2)
    assert trim_floor(msgs[:2], 2) == count_message_tokens(msgs[:2])


def test_tool_results_are_not_orphaned() -> None:
    msgs = [
        {"role": "user", "content": WORDS},
        {"role": "assistant", "content": "", "tool_calls": []},
        {"role": "tool", "content": "42", "tool_call_id": "a"},
        {"role": "user", "content": "thanks"},
    ]
    out, _ = trim_messages(msgs, 30, keep_last=2)
    assert out[1]["role"] != "tool" and out[-1]["content"] == "thanks"


def test_engine_prepares_messages_per_model(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config())
    msgs = _conversation(20)  # about 8,000 tokens: too many for "local"
    trimmed, changed = engine.prepare_messages("local", msgs, 500)
    assert changed and count_message_tokens(trimmed) <= 4096 - 500
    same, changed = engine.prepare_messages("large", msgs, 500)
    assert not changed and same == msgs


async def test_summariser_hook_replaces_the_note(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    routes = [
        {"name": "chat", "candidates": ["local"], "summariser": "small"},
        {"name": "math", "candidates": ["small"]},
    ]
    engine = engine_for(make_config(routes=routes))
    seen: list[tuple[str, int]] = []

    async def summarise(model: str, dropped: Sequence[Mapping[str, Any]]) -> str:
        seen.append((model, len(dropped)))
        return "the user asked twenty questions about words."

    msgs = _conversation(20)
    d = await engine.decide(classified("chat"), req(messages=tuple(msgs)))
    out, changed = await engine.condense_messages(d, "local", msgs, 500, summarise)
    assert changed and seen and seen[0][0] == "small"
    assert out[1]["content"].startswith(f"Summary of {seen[0][1]} earlier messages")
    assert out[-1] == msgs[-1]
    # Without a hook the plain note is used.
    plain, _ = await engine.condense_messages(d, "local", msgs, 500)
    assert "were left out" in plain[1]["content"]
