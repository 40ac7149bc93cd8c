"""Budgets: reserve worst case, settle, never overshoot, step down, 429."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from policy_helpers import classified, make_config, req

from mixroute.errors import ClientError
from mixroute.policy import FakeClock, Outcome, PolicyEngine
from mixroute.policy.decision import SeedPolicy

# One request to "large" with 1000 prompt and 1000 output tokens costs at most
# (1000·2 + 1000·8)/1e6 = 0.01 USD.
LARGE_WORST = 0.01


def _budget(**kw: object) -> dict[str, object]:
    return {
        "name": "team",
        "scope": "key",
        "match": "k1",
        "limit_usd": 0.02,
        "step_down_at": 1.0,
    } | kw


async def test_ten_at_once_on_a_budget_for_two(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(budgets=[_budget()]))
    r = req(model="large", key_id="k1", prompt_tokens=1000, max_tokens=1000)
    results = await asyncio.gather(
        *(engine.decide(None, r) for _ in range(10)), return_exceptions=True
    )
    ok = [x for x in results if not isinstance(x, BaseException)]
    refused = [x for x in results if isinstance(x, ClientError)]
    assert len(ok) == 2 and len(refused) == 8
    err = refused[0]
    assert err.status == 429 and err.code == "budget_exceeded"
    assert '"team"' in err.message and "$0.02" in err.message
    assert await engine.budgets.spent(
        engine.budgets.slots("k1", None, engine.clock.now())[0]
    ) == pytest.approx(2 * LARGE_WORST)


async def test_settle_returns_the_unused_part(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(budgets=[_budget()]))
    r = req(model="large", key_id="k1", prompt_tokens=1000, max_tokens=1000)
    # Without settlement the third request would find no room.
    for _ in range(3):
        d = await engine.decide(None, r)
        assert d.trace is not None
        assert d.trace.reserved_usd == pytest.approx(LARGE_WORST)
        await engine.record(d, Outcome(200, "large", cost_usd=0.004))
    slot = engine.budgets.slots("k1", None, engine.clock.now())[0]
    assert await engine.budgets.spent(slot) == pytest.approx(0.012)
    with pytest.raises(ClientError):
        await engine.decide(None, r)
    # Other keys are not limited by k1's budget.
    await engine.decide(None, req(model="large", key_id="k2"))


async def test_released_reservation_is_given_back(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(budgets=[_budget()]))
    r = req(model="large", key_id="k1", prompt_tokens=1000, max_tokens=1000)
    for _ in range(5):
        await engine.release(await engine.decide(None, r))


async def test_step_down_near_the_limit_then_refuse(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    budget = _budget(limit_usd=0.03, step_down_at=0.5)
    engine = engine_for(make_config(budgets=[budget]))
    r = req(key_id="k1", prompt_tokens=1000, max_tokens=1000)
    c = classified("math", confidence=0.5)  # → default model "large"
    first = await engine.decide(c, r)
    assert first.model == "large" and "budget" not in first.rule
    await engine.record(first, Outcome(200, "large", cost_usd=0.016))
    # 0.016 ≥ half the limit: cheaper candidates first.
    second = await engine.decide(c, r)
    assert second.model == "medium"
    assert second.rule.endswith("budget:step-down=team")
    # The reservation covers the dearest fallback the budget can still hold.
    assert second.candidates == ("medium", "large")
    assert second.trace is not None and second.trace.reserved_usd == LARGE_WORST
    await engine.record(second, Outcome(200, "medium", cost_usd=0.013))
    # 0.029 spent: only the small model's worst case (0.00075) still fits.
    third = await engine.decide(c, r)
    assert third.model == "small" and third.candidates == ("small",)
    await engine.record(third, Outcome(200, "small", cost_usd=0.001))
    with pytest.raises(ClientError) as info:
        await engine.decide(c, r)
    assert info.value.status == 429


async def test_reservation_failure_steps_down_even_before_the_mark(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(budgets=[_budget(limit_usd=0.005)]))
    d = await engine.decide(
        classified("math", confidence=0.5),
        req(key_id="k1", prompt_tokens=1000, max_tokens=1000),
    )
    assert d.model == "medium" and d.rule.endswith("budget:step-down=team")


async def test_route_and_monthly_budgets_roll_over_in_the_time_zone(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    budgets = [
        {
            "name": "math-day",
            "scope": "route",
            "match": "math",
            "period": "day",
            "limit_usd": 0.01,
            "step_down_at": 1.0,
        },
        {
            "name": "all-month",
            "scope": "global",
            "period": "month",
            "limit_usd": 0.025,
            "step_down_at": 1.0,
        },
    ]
    engine = engine_for(make_config(budgets=budgets, timezone="America/New_York"))
    r = req(model="auto:math", prompt_tokens=1000, max_tokens=1000)
    tz = ZoneInfo("America/New_York")
    clock.set(datetime(2026, 1, 30, 23, 0, tzinfo=tz))
    d = await engine.decide(None, r)
    await engine.record(d, Outcome(200, d.model, cost_usd=0.01))
    with pytest.raises(ClientError, match="math-day"):
        await engine.decide(None, r)
    clock.set(datetime(2026, 1, 31, 0, 30, tzinfo=tz))  # a new local day
    d = await engine.decide(None, r)
    await engine.record(d, Outcome(200, d.model, cost_usd=0.01))
    clock.set(datetime(2026, 2, 1, 0, 30, tzinfo=tz))
    # Chat traffic is outside the math budget but inside the monthly one.
    d = await engine.decide(
        None, req(model="auto:chat", prompt_tokens=1000, max_tokens=1000)
    )
    assert d.trace is not None and [x.budget for x in d.trace.reservations] == [
        "all-month"
    ]


async def test_named_model_decision_with_and_without_budgets(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    r = req(model="large", key_id="k1", prompt_tokens=1000, max_tokens=1000)
    # A budget reserves for named models too.
    budgeted = await engine_for(make_config(budgets=[_budget()])).decide(None, r)
    assert budgeted.trace is not None and budgeted.trace.reservations
    # Without one, no rule applies: the seed's chain, traced for the outcome.
    free = await engine_for(make_config()).decide(None, r)
    seed = SeedPolicy(make_config()).for_model("large")
    assert free.trace is not None and free.trace.request is r
    assert (free.model, free.candidates, free.rule, free.route) == (
        seed.model,
        seed.candidates,
        seed.rule,
        seed.route,
    )
    assert not free.trace.reservations
    with pytest.raises(ClientError) as unknown:
        await engine_for(make_config()).decide(None, req(model="no-such-model"))
    assert unknown.value.status == 404
