"""Conversation stickiness: pins per key, TTL, one move on failure."""

from __future__ import annotations

from collections.abc import Callable

from policy_helpers import classified, make_config, req

from mixroute.policy import FakeClock, Outcome, PolicyEngine, PolicyRequest
from mixroute.policy.request import conversation_hash


async def test_session_stays_on_first_turn_model(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(cost_quality=0.5))
    turn1 = await engine.decide(
        classified("math", hard=0.9), req(key_id="k", session_id="s1")
    )
    assert turn1.model == "large"
    await engine.record(turn1, Outcome(200, "large"))
    # An easy follow-up would go to the small model, but the session is pinned.
    turn2 = await engine.decide(
        classified("math", hard=0.1), req(key_id="k", session_id="s1")
    )
    assert turn2.model == "large" and turn2.rule.endswith("session:pinned")
    # Another key with the same session id is not pinned.
    other = await engine.decide(
        classified("math", hard=0.1), req(key_id="k2", session_id="s1")
    )
    assert other.model == "small" and "session" not in other.rule


async def test_pin_expires_after_ttl(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    engine = engine_for(make_config(cost_quality=0.5, sessions={"ttl_s": 60}))
    r = req(key_id="k", session_id="s")
    d = await engine.decide(classified("math", hard=0.9), r)
    await engine.record(d, Outcome(200, "large"))
    clock.advance(59)
    assert (await engine.decide(classified("math", hard=0.1), r)).model == "large"
    clock.advance(2)
    assert (await engine.decide(classified("math", hard=0.1), r)).model == "small"


async def test_failure_moves_the_pin_once_and_it_stays(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(cost_quality=0.5))
    r = req(key_id="k", session_id="s")
    d = await engine.decide(classified("math", hard=0.1), r)
    await engine.record(d, Outcome(200, "small"))
    d = await engine.decide(classified("math", hard=0.1), r)
    assert d.candidates[:2] == ("small", "medium")
    await engine.record(d, Outcome(200, "medium", failed=("small",)))
    for _ in range(3):
        d = await engine.decide(classified("math", hard=0.1), r)
        assert d.model == "medium"
        await engine.record(d, Outcome(200, "medium"))


async def test_user_plus_conversation_hash_identifies_a_conversation(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(cost_quality=0.5))
    turn1 = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    turn2 = [
        *turn1,
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "more"},
    ]
    assert conversation_hash(turn1) == conversation_hash(turn2)
    body1 = {"model": "auto", "user": "alice", "messages": turn1}
    body2 = {"model": "auto", "user": "alice", "messages": turn2}
    r1 = PolicyRequest.from_body(body1, key_id="k", request_id="r1")
    d = await engine.decide(classified("math", hard=0.9), r1)
    await engine.record(d, Outcome(200, "large"))
    r2 = PolicyRequest.from_body(body2, key_id="k", request_id="r2")
    assert (await engine.decide(classified("math", hard=0.1), r2)).model == "large"
    bob = PolicyRequest.from_body(dict(body2, user="bob"), key_id="k")
    assert (await engine.decide(classified("math", hard=0.1), bob)).model == "small"
