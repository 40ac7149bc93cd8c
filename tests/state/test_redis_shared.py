"""Two clients on one real Redis behave like two replicas sharing state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mixroute.state.redis import RedisStore
from redis_server import RedisServer, unique_prefix


@pytest.fixture
async def replicas(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    prefix = unique_prefix()
    a = RedisStore.from_url(redis_server.url, prefix=prefix)
    b = RedisStore.from_url(redis_server.url, prefix=prefix)
    yield a, b
    await a.close()
    await b.close()


async def test_budget_for_two_admits_two_across_clients(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    calls = [(a if i % 2 else b).reserve("budget:k", 0.05, 0.10, 60) for i in range(10)]
    results = await asyncio.gather(*calls)
    assert results.count(True) == 2
    assert await a.amount("budget:k") == pytest.approx(0.10)
    assert await b.amount("budget:k") == pytest.approx(0.10)


async def test_many_concurrent_reservations_never_overspend(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    calls = [(a, b)[i % 2].reserve("budget:big", 0.003, 0.1, 60) for i in range(200)]
    results = await asyncio.gather(*calls)
    assert results.count(True) == 33
    assert await a.amount("budget:big") == pytest.approx(0.099)


async def test_pin_written_by_one_is_read_by_other(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    assert await a.set_if_absent("pin:s", "model-a", 10)
    assert not await b.set_if_absent("pin:s", "model-b", 10)
    assert await b.get("pin:s") == "model-a"


async def test_circuit_opened_by_one_is_open_for_other(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    kw = {"failures": 2, "window_s": 10.0, "cooldown_s": 5.0}
    await a.record_failure("gpt", **kw)
    opened = await b.record_failure("gpt", **kw)
    assert opened.is_open
    seen = await a.circuit("gpt")
    assert seen.is_open
    assert seen.open_until == pytest.approx(opened.open_until, abs=0.1)


async def test_counters_and_hashes_are_shared(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    a, b = replicas
    await a.incr_window("rl:k", 3, 10)
    assert (await b.incr_window("rl:k", 1, 10)).count == 4
    await a.hincr("fb:route", "m", 2)
    await b.hincr("fb:route", "m", 1)
    assert await a.hgetall("fb:route") == {"m": 3.0}


async def test_prefixes_isolate_deployments(redis_server: RedisServer) -> None:
    a = RedisStore.from_url(redis_server.url, prefix=unique_prefix())
    b = RedisStore.from_url(redis_server.url, prefix=unique_prefix())
    try:
        await a.set("pin:s", "x")
        assert await b.get("pin:s") is None
    finally:
        await a.close()
        await b.close()
