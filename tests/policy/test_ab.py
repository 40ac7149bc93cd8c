"""A/B splits: weights, stickiness, schedules, halts, statistics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import START, classified, make_config, req

from mixroute.config.policies import ABTestConfig
from mixroute.policy import FakeClock, Needs, Outcome, PolicyEngine
from mixroute.policy.ab import arm_for, bucket

AB = {
    "name": "next",
    "route": "math",
    "production": "small",
    "candidate": "medium-next",
    "weight": 10,
    "halt": {"max_error_rate": 0.3, "min_samples": 10},
}


@settings(max_examples=25, deadline=None)
@given(weight=st.floats(min_value=5, max_value=95), salt=st.text(max_size=8))
def test_observed_share_matches_weight(weight: float, salt: str) -> None:
    test = ABTestConfig(
        name="t" + str(len(salt)), production="a", candidate="b", weight=weight
    )
    users = [f"{salt}-user-{i}" for i in range(4000)]
    share = sum(arm_for(test, u, START) == "candidate" for u in users) / len(users)
    # Binomial sd at n=4000 is at most 0.8 points; allow 4 sd.
    assert abs(share - weight / 100) < 0.032


@settings(max_examples=50, deadline=None)
@given(
    user=st.text(min_size=1, max_size=40), w1=st.floats(0, 100), w2=st.floats(0, 100)
)
def test_one_user_one_arm_and_rollouts_only_add_users(
    user: str, w1: float, w2: float
) -> None:
    lo, hi = sorted((w1, w2))
    t_lo = ABTestConfig(name="t", production="a", candidate="b", weight=lo)
    t_hi = ABTestConfig(name="t", production="a", candidate="b", weight=hi)
    assert arm_for(t_lo, user, START) == arm_for(t_lo, user, START)
    assert 0 <= bucket("t", user) < 10_000
    if arm_for(t_lo, user, START) == "candidate":
        assert arm_for(t_hi, user, START) == "candidate"


async def test_engine_split_is_sticky_and_named(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(ab_tests=[AB]))
    arms: dict[str, set[str]] = {}
    for i in range(300):
        user = f"u{i % 100}"
        d = await engine.decide(classified("math"), req(key_id="k", user=user))
        arms.setdefault(user, set()).add(d.model)
        assert d.rule.endswith(("ab:next:candidate", "ab:next:production"))
    assert all(len(models) == 1 for models in arms.values())
    on_candidate = sum("medium-next" in m for m in arms.values())
    assert 3 <= on_candidate <= 20  # 10 % of 100 users
    d = await engine.decide(classified("math"), req(key_id="k", user="u1"))
    if d.model == "medium-next":
        assert d.candidates[1] == "small"  # production is the fallback


async def test_schedule_steps_the_weight_up(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    ab = dict(
        AB,
        weight=0,
        schedule=[
            {"at": (START + timedelta(days=1)).isoformat(), "weight": 50},
            {"at": (START + timedelta(days=2)).isoformat(), "weight": 100},
        ],
    )
    engine = engine_for(make_config(ab_tests=[ab]))

    async def share() -> float:
        n = 0
        for i in range(200):
            d = await engine.decide(classified("math"), req(key_id=f"k{i}"))
            n += d.model == "medium-next"
        return n / 200

    assert await share() == 0
    clock.advance(86_400)
    assert 0.35 < await share() < 0.65
    clock.advance(86_400)
    assert await share() == 1


async def test_candidate_errors_halt_back_to_production(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(ab_tests=[dict(AB, weight=100)]))
    for i in range(10):
        d = await engine.decide(classified("math"), req(key_id=f"k{i}"))
        assert d.model == "medium-next"
        failed = i % 2 == 0
        outcome = (
            Outcome(502, None, failed=("medium-next",), latency_ms=30)
            if failed
            else Outcome(200, "medium-next", latency_ms=20, cost_usd=0.001)
        )
        await engine.record(d, outcome)
    stats = await engine.stats()
    cand = stats["next"]["arms"]["candidate"]
    assert cand["n"] == 10 and cand["errors"] == 5
    assert cand["error_rate"] == 0.5
    assert cand["latency_ms"] == 25
    assert cand["cost_usd"] == 0.005
    assert stats["next"]["halted"].startswith("error rate 0.50")
    d = await engine.decide(classified("math"), req(key_id="k1"))
    assert d.model == "small" and d.rule.endswith("ab:next:production")
    await engine.ab.resume("next")
    d = await engine.decide(classified("math"), req(key_id="k1"))
    assert d.model == "medium-next"


async def test_no_halt_before_minimum_sample_or_on_latency(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    ab = dict(AB, weight=100, halt={"max_latency_ms": 100, "min_samples": 5})
    engine = engine_for(make_config(ab_tests=[ab]))
    for i in range(5):
        d = await engine.decide(classified("math"), req(key_id=f"k{i}"))
        await engine.record(d, Outcome(200, "medium-next", latency_ms=500))
        halted = (await engine.stats())["next"]["halted"]
        assert (halted is None) == (i < 4)
    assert "mean latency 500 ms" in (await engine.stats())["next"]["halted"]


async def test_an_arm_counts_only_when_its_model_was_called(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(ab_tests=[dict(AB, weight=100)]))
    # medium-next has no vision: the capability filter skips it.
    d = await engine.decide(
        classified("math"), req(key_id="k", needs=Needs(vision=True))
    )
    assert d.model == "small" and "capability:skip=medium-next" in d.rule
    await engine.record(d, Outcome(200, "small"))
    assert (await engine.stats())["next"]["arms"]["candidate"]["n"] == 0


async def test_a_halt_also_moves_pinned_conversations(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(ab_tests=[dict(AB, weight=100)]))
    r = req(key_id="k", session_id="s")
    d = await engine.decide(classified("math"), r)
    await engine.record(d, Outcome(200, "medium-next"))
    assert (await engine.decide(classified("math"), r)).model == "medium-next"
    for i in range(10):
        d = await engine.decide(classified("math"), req(key_id=f"u{i}"))
        await engine.record(d, Outcome(502, None, failed=("medium-next",)))
    d = await engine.decide(classified("math"), r)
    assert d.model == "small" and "session:pinned" not in d.rule
