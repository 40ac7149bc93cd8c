"""Redis stopped and restarted under a FailoverStore: degrade once, then recover."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable

import pytest

from mixroute.config.schema import StateConfig
from mixroute.state.base import StateStore, StateUnavailable
from mixroute.state.factory import build_state_store, redis_url
from mixroute.state.failover import FailoverStore
from mixroute.state.memory import MemoryStore
from mixroute.state.redis import RedisStore
from redis_server import RedisServer, unique_prefix


async def test_redis_store_raises_state_unavailable_when_down(
    make_redis_server: Callable[[], RedisServer],
) -> None:
    server = make_redis_server()
    store = RedisStore.from_url(server.url, timeout_s=0.2)
    await store.set("k", "v")
    server.stop()
    try:
        assert await store.ping() is False
        with pytest.raises(StateUnavailable):
            await store.get("k")
    finally:
        await store.close()


async def test_outage_degrades_once_and_recovers(
    make_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server()
    prefix = unique_prefix()
    primary = RedisStore.from_url(server.url, prefix=prefix, timeout_s=0.2)
    store = FailoverStore(primary, MemoryStore(), reprobe_s=0.05)
    observer = RedisStore.from_url(server.url, prefix=prefix)
    try:
        await store.set("pin:s", "model-a")
        assert await observer.get("pin:s") == "model-a"

        server.stop()
        caplog.set_level(logging.INFO, logger="mixroute.state")
        # Many calls of every kind during the outage: none raises.
        for i in range(20):
            await store.set(f"pin:{i}", "local")
            assert await store.get(f"pin:{i}") == "local"
            assert await store.reserve("budget", 0.01, 1.0, 60)
            await store.incr_window("rl", 1, 60)
            await store.hincr("fb", "m", 1)
            await store.record_failure("m", failures=99, window_s=60, cooldown_s=1)
        assert store.degraded
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "local memory" in warnings[0].getMessage()

        server.start()
        # Calls drive the re-probe (in the background, at most every reprobe_s).
        deadline = time.monotonic() + 5
        while store.degraded:
            assert time.monotonic() < deadline, "did not return to Redis"
            await store.get("anything")
            await asyncio.sleep(0.02)
        await store.set("pin:after", "shared")
        assert await observer.get("pin:after") == "shared"
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    finally:
        await store.close()
        await observer.close()


async def test_concurrent_calls_during_outage_warn_once(
    make_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server()
    store = FailoverStore(RedisStore.from_url(server.url, timeout_s=0.2), reprobe_s=30)
    try:
        await store.set("warm", "1")
        server.stop()
        caplog.set_level(logging.WARNING, logger="mixroute.state")
        results = await asyncio.gather(
            *(store.reserve("b", 0.01, 0.02, 60) for _ in range(10))
        )
        assert results.count(True) == 2
        assert len(caplog.records) == 1
    finally:
        await store.close()


async def test_factory_builds_memory_and_failover(redis_server: RedisServer) -> None:
    memory = build_state_store(StateConfig())
    assert isinstance(memory, MemoryStore)

    config = StateConfig(backend="redis", redis_url="redis://127.0.0.1:1/0")
    env = {"MIXROUTE_REDIS_URL": redis_server.url}
    assert redis_url(config, env) == redis_server.url
    assert redis_url(config, {}) == "redis://127.0.0.1:1/0"
    store: StateStore = build_state_store(
        config.model_copy(update={"key_prefix": unique_prefix()}), env
    )
    try:
        assert isinstance(store, FailoverStore)
        assert await store.ping()
        assert await store.set_if_absent("k", "v", 5)
        assert not store.degraded
    finally:
        await store.close()


async def test_failover_starts_degraded_when_redis_is_down_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Port 1 on loopback refuses connections: Redis "down" from the start.
    config = StateConfig(backend="redis", redis_url="redis://127.0.0.1:1/0")
    store = build_state_store(config, {})
    try:
        assert await store.set_if_absent("k", "v", 5)
        assert await store.get("k") == "v"
        assert isinstance(store, FailoverStore) and store.degraded
    finally:
        await store.close()


async def test_a_hung_redis_degrades_after_the_timeout(
    make_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server()
    assert server.proc is not None
    store = FailoverStore(
        RedisStore.from_url(server.url, timeout_s=0.2), reprobe_s=0.05
    )
    try:
        await store.set("k", "shared")
        server.proc.send_signal(signal.SIGSTOP)  # alive but not answering
        start = time.monotonic()
        assert await store.get("k") is None  # served locally: not there
        assert time.monotonic() - start < 2
        assert store.degraded
        start = time.monotonic()
        await store.set("k", "local")
        assert time.monotonic() - start < 0.05  # no more waiting on Redis

        server.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 5
        while store.degraded:
            assert time.monotonic() < deadline, "did not return to Redis"
            await store.get("k")
            await asyncio.sleep(0.02)
        assert await store.get("k") == "shared"
    finally:
        server.proc.send_signal(signal.SIGCONT)
        await store.close()
