"""Circuit breakers on two replicas sharing one real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mixroute.config.schema import CircuitBreakerConfig
from mixroute.state.circuits import SharedCircuitBreaker
from mixroute.state.memory import MemoryStore
from mixroute.state.redis import RedisStore
from redis_server import RedisServer, unique_prefix

CONFIG = CircuitBreakerConfig(failures=3, window_s=10, cooldown_s=0.3)


@pytest.fixture
async def pair(
    redis_server: RedisServer,
) -> AsyncIterator[tuple[SharedCircuitBreaker, SharedCircuitBreaker]]:
    prefix = unique_prefix()
    stores = [RedisStore.from_url(redis_server.url, prefix=prefix) for _ in range(2)]
    a, b = (SharedCircuitBreaker("gpt", CONFIG, s, refresh_s=0.05) for s in stores)
    yield a, b
    for breaker in (a, b):
        await breaker.drain()
    for store in stores:
        await store.close()


async def test_circuit_opened_on_one_replica_is_open_on_the_other(
    pair: tuple[SharedCircuitBreaker, SharedCircuitBreaker],
) -> None:
    a, b = pair
    assert a.allow() and b.allow()
    for _ in range(3):
        a.record_failure()
    await a.drain()
    assert a.state == "open" and not a.allow()

    await b.refresh()
    assert b.state == "open"
    assert not b.allow()

    await asyncio.sleep(0.35)
    await b.refresh()
    assert b.allow()


async def test_failures_on_both_replicas_add_up(
    pair: tuple[SharedCircuitBreaker, SharedCircuitBreaker],
) -> None:
    a, b = pair
    a.record_failure()
    b.record_failure()
    await a.drain()
    await b.drain()
    a.record_failure()  # the third failure, counted in Redis
    await a.drain()
    await b.refresh()
    assert not b.allow()
    # Locally, a has seen only two failures: it is blocked by the shared state.
    assert a.state == "open"


async def test_success_closes_the_shared_circuit(
    pair: tuple[SharedCircuitBreaker, SharedCircuitBreaker],
) -> None:
    a, b = pair
    for _ in range(3):
        b.record_failure()
    await b.drain()
    await a.refresh()
    assert not a.allow()

    b.record_success()
    await b.drain()
    await a.refresh()
    assert a.allow()


async def test_refresh_happens_in_the_background(
    pair: tuple[SharedCircuitBreaker, SharedCircuitBreaker],
) -> None:
    a, b = pair
    assert b.allow()
    for _ in range(3):
        a.record_failure()
    await a.drain()
    # b's reads start refreshes on their own; no explicit refresh here.
    for _ in range(50):
        if not b.allow():
            break
        await asyncio.sleep(0.02)
    assert b.state == "open"


async def test_works_on_the_memory_store() -> None:
    breaker = SharedCircuitBreaker("m", CONFIG, MemoryStore())
    for _ in range(3):
        breaker.record_failure()
    await breaker.drain()
    assert not breaker.allow()
    await asyncio.sleep(0.35)
    assert breaker.allow()  # the half-open probe
    breaker.record_success()
    await breaker.drain()
    assert breaker.allow() and breaker.state == "closed"
