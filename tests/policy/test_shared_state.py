"""The engine on the shared StateStore: replicas share budgets, pins, halts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from policy_helpers import classified, make_config, req

from mixroute.errors import ClientError
from mixroute.policy import FakeClock, Outcome, PolicyEngine
from mixroute.state.memory import MemoryStore
from mixroute.state.redis import RedisStore
from redis_server import RedisServer, unique_prefix

BUDGET = {
    "name": "team",
    "scope": "key",
    "match": "k1",
    "limit_usd": 0.02,
    "step_down_at": 1.0,
}
AB = {
    "name": "next",
    "route": "math",
    "production": "small",
    "candidate": "medium-next",
    "weight": 100,
    "halt": {"max_error_rate": 0.1, "min_samples": 2},
}


@pytest.fixture
async def replicas(
    redis_server: RedisServer, clock: FakeClock
) -> AsyncIterator[tuple[PolicyEngine, PolicyEngine]]:
    prefix = unique_prefix()
    a = RedisStore.from_url(redis_server.url, prefix=prefix)
    b = RedisStore.from_url(redis_server.url, prefix=prefix)
    cfg = make_config(budgets=[BUDGET], ab_tests=[AB], cost_quality=0.5)
    yield PolicyEngine(cfg, a, clock), PolicyEngine(cfg, b, clock)
    await a.close()
    await b.close()


async def test_budget_for_two_admits_two_across_replicas(
    replicas: tuple[PolicyEngine, PolicyEngine],
) -> None:
    r = req(model="large", key_id="k1", prompt_tokens=1000, max_tokens=1000)
    results = await asyncio.gather(
        *(replicas[i % 2].decide(None, r) for i in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(x, BaseException) for x in results) == 2
    refused = [x for x in results if isinstance(x, ClientError)]
    assert len(refused) == 8 and refused[0].code == "budget_exceeded"


async def test_pins_and_halts_are_seen_by_every_replica(
    replicas: tuple[PolicyEngine, PolicyEngine],
) -> None:
    a, b = replicas
    r = req(key_id="k", session_id="s", model="auto:chat")
    d = await a.decide(classified("chat", hard=0.9), r)
    await a.record(d, Outcome(200, "medium"))
    assert (await b.decide(classified("chat", hard=0.0), r)).model == "medium"
    for i in range(2):
        d = await a.decide(classified("math", hard=0.1), req(key_id=f"u{i}"))
        assert d.model == "medium-next"
        await a.record(d, Outcome(502, None, failed=("medium-next",)))
    d = await b.decide(classified("math", hard=0.1), req(key_id="u9"))
    assert d.model == "small" and d.rule.endswith("ab:next:production")
    assert (await b.stats())["next"]["arms"]["candidate"]["errors"] == 2


async def test_state_memory_store_works_as_policy_store(clock: FakeClock) -> None:
    engine = PolicyEngine(make_config(budgets=[BUDGET]), MemoryStore(), clock)
    r = req(model="large", key_id="k1", prompt_tokens=1000, max_tokens=1000)
    results = await asyncio.gather(
        *(engine.decide(None, r) for _ in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(x, BaseException) for x in results) == 2
