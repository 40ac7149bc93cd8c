"""The contract every StateStore meets, run against memory and a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mixroute.state.base import StateStore
from mixroute.state.memory import MemoryStore
from mixroute.state.redis import RedisStore
from redis_server import RedisServer, unique_prefix


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    redis_store = RedisStore.from_url(server.url, prefix=unique_prefix())
    yield redis_store
    await redis_store.close()


async def test_ping(store: StateStore) -> None:
    assert await store.ping() is True
    assert isinstance(store, StateStore)


async def test_key_value_with_ttl(store: StateStore) -> None:
    assert await store.get("pin:s1") is None
    await store.set("pin:s1", "model-a", ttl_s=0.15)
    await store.set("pin:s2", "model-b")
    assert await store.get("pin:s1") == "model-a"

    await asyncio.sleep(0.2)
    assert await store.get("pin:s1") is None
    assert await store.get("pin:s2") == "model-b"

    await store.delete("pin:s2")
    assert await store.get("pin:s2") is None


async def test_set_if_absent_has_one_winner(store: StateStore) -> None:
    results = await asyncio.gather(
        *(store.set_if_absent("ab:exp:user1", f"arm{i}", 5) for i in range(10))
    )
    assert results.count(True) == 1
    winner = f"arm{results.index(True)}"
    assert await store.get("ab:exp:user1") == winner


async def test_set_replaces_value_and_ttl(store: StateStore) -> None:
    await store.set("k", "one", ttl_s=0.1)
    await store.set("k", "two")
    await asyncio.sleep(0.15)
    assert await store.get("k") == "two"


async def test_touch_slides_expiry(store: StateStore) -> None:
    assert await store.touch("missing", 1) is False
    await store.set("pin", "m", ttl_s=0.15)
    await asyncio.sleep(0.1)
    assert await store.touch("pin", 0.3) is True
    await asyncio.sleep(0.1)
    assert await store.get("pin") == "m"


async def test_window_counter_counts_and_resets(store: StateStore) -> None:
    first = await store.incr_window("rl:key1", 1, 0.2)
    assert first.count == 1
    assert 0 < first.reset_in_s <= 0.2
    second = await store.incr_window("rl:key1", 5, 0.2)
    assert second.count == 6
    assert second.reset_in_s <= first.reset_in_s

    await asyncio.sleep(0.25)
    assert (await store.incr_window("rl:key1", 2, 0.2)).count == 2


async def test_concurrent_window_increments_are_all_counted(store: StateStore) -> None:
    counts = await asyncio.gather(
        *(store.incr_window("rl:burst", 1, 10) for _ in range(20))
    )
    assert sorted(c.count for c in counts) == list(range(1, 21))


async def test_reserve_within_limit_only(store: StateStore) -> None:
    assert await store.reserve("budget:k", 0.4, 1.0, 60) is True
    assert await store.reserve("budget:k", 0.6, 1.0, 60) is True
    assert await store.reserve("budget:k", 0.000001, 1.0, 60) is False
    assert await store.amount("budget:k") == pytest.approx(1.0)


async def test_ten_reservations_on_a_budget_for_two(store: StateStore) -> None:
    results = await asyncio.gather(
        *(store.reserve("budget:team", 0.01, 0.02, 60) for _ in range(10))
    )
    assert results.count(True) == 2
    assert await store.amount("budget:team") == pytest.approx(0.02)


async def test_settle_replaces_reservation_with_actual(store: StateStore) -> None:
    assert await store.reserve("budget:s", 0.5, 1.0, 60)
    await store.settle("budget:s", 0.5, 0.1)
    assert await store.amount("budget:s") == pytest.approx(0.1)
    assert await store.reserve("budget:s", 0.9, 1.0, 60)

    await store.settle("budget:s", 0.9, 0.0)
    assert await store.amount("budget:s") == pytest.approx(0.1)


async def test_small_costs_add_up_exactly(store: StateStore) -> None:
    for _ in range(1000):
        assert await store.reserve("budget:tiny", 0.000_003, 1.0, 60)
    assert await store.amount("budget:tiny") == pytest.approx(0.003, abs=1e-12)


async def test_budget_period_expires(store: StateStore) -> None:
    assert await store.reserve("budget:p", 1.0, 1.0, 0.15)
    assert not await store.reserve("budget:p", 0.1, 1.0, 0.15)
    await asyncio.sleep(0.2)
    assert await store.amount("budget:p") == 0.0
    # A settle for the old period is dropped, not charged to the new one.
    await store.settle("budget:p", 1.0, 2.0)
    assert await store.amount("budget:p") == 0.0
    assert await store.reserve("budget:p", 1.0, 1.0, 0.15)


async def test_circuit_opens_after_failures_and_closes(store: StateStore) -> None:
    kw = {"failures": 3, "window_s": 10.0, "cooldown_s": 0.2}
    assert (await store.record_failure("m1", **kw)).failures == 1
    assert (await store.record_failure("m1", **kw)).failures == 2
    opened = await store.record_failure("m1", **kw)
    assert opened.is_open
    assert (await store.circuit("m1")).is_open
    assert (await store.circuit("m2")).is_open is False

    # A failure while open neither counts nor extends the cool-down.
    again = await store.record_failure("m1", **kw)
    assert again.open_until == pytest.approx(opened.open_until, abs=0.05)

    await asyncio.sleep(0.25)
    closed = await store.circuit("m1")
    assert not closed.is_open
    assert closed.failures == 0


async def test_circuit_window_forgets_old_failures(store: StateStore) -> None:
    kw = {"failures": 2, "window_s": 0.15, "cooldown_s": 5.0}
    await store.record_failure("m", **kw)
    await asyncio.sleep(0.2)
    state = await store.record_failure("m", **kw)
    assert not state.is_open
    assert state.failures == 1


async def test_circuit_success_and_forced_open(store: StateStore) -> None:
    kw = {"failures": 2, "window_s": 10.0, "cooldown_s": 5.0}
    await store.record_failure("m", **kw)
    await store.record_success("m")
    assert (await store.record_failure("m", **kw)).failures == 1

    forced = await store.open_circuit("m", 0.1)
    assert forced.is_open and (await store.circuit("m")).is_open
    await store.record_success("m")
    assert not (await store.circuit("m")).is_open


async def test_hash_increments(store: StateStore) -> None:
    assert await store.hincr("fb:code", "model-a", 1) == 1
    assert await store.hincr("fb:code", "model-a", 0.5) == pytest.approx(1.5)
    await store.hincr("fb:code", "model-b", -1)
    assert await store.hgetall("fb:code") == {"model-a": 1.5, "model-b": -1.0}
    assert await store.hgetall("fb:none") == {}

    await store.hincr("ab:tmp", "n", 1, ttl_s=0.1)
    await asyncio.sleep(0.15)
    assert await store.hgetall("ab:tmp") == {}


async def test_an_unbounded_limit_is_accepted(store: StateStore) -> None:
    assert await store.reserve("budget:open", 5.0, float("inf"), 60)
    assert await store.reserve("budget:open", 1e9, 1e9 + 5, 60)
    assert not await store.reserve("budget:open", 1e9, 1e9, 60)
    assert await store.amount("budget:open") == pytest.approx(1e9 + 5)
