"""The Redis state store, shared by every replica (redis-py asyncio).

Each compound operation (reserve, settle, window counters, circuit failures)
is one Lua script, so it is atomic on the server however many replicas call it
at once. Scripts name only keys passed in ``KEYS``, so they also run on a
Redis Cluster as long as each call's keys share a slot (they are one key, or
one model's two keys under a ``{model}`` hash tag).

Key layout under the configured prefix (default ``mixroute:``):
``kv:<key>`` strings, ``win:<key>`` window counters, ``bud:<key>`` budgets in
nano-USD, ``cb:{<model>}:f`` failure timestamps (sorted set) and
``cb:{<model>}:o`` the open marker whose TTL is the remaining cool-down,
``h:<key>`` hashes of floats.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from mixroute.state.base import (
    CircuitState,
    StateUnavailable,
    WindowCount,
    from_nano,
    to_nano,
)

_RESERVE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return 0
end
redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""

_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('INCRBY', KEYS[1], ARGV[1]) < 0 then
  redis.call('SET', KEYS[1], '0', 'KEEPTTL')
end
return 1
"""

_INCR_WINDOW = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
"""

# Failure times come from the server's clock so replicas agree on the window.
_CIRCUIT_FAILURE = """
local open = redis.call('PTTL', KEYS[2])
if open > 0 then
  return {0, open}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  return {0, tonumber(ARGV[3])}
end
return {n, -1}
"""

_CIRCUIT_READ = """
return {redis.call('ZCARD', KEYS[1]), redis.call('PTTL', KEYS[2])}
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


@contextmanager
def as_state_unavailable() -> Iterator[None]:
    """Turn every backend failure into ``StateUnavailable`` (one place)."""
    try:
        yield
    except (TimeoutError, RedisError, OSError) as exc:
        raise StateUnavailable(
            f"The Redis store failed ({type(exc).__name__}: {exc})."
        ) from exc


def connect(url: str, *, timeout_s: float = 0.5) -> aioredis.Redis:
    """A redis-py asyncio client for ``url`` that fails fast.

    One immediate retry lets a pooled connection that the server closed be
    replaced; beyond that a dead Redis must surface quickly so callers can
    degrade instead of waiting.
    """
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1),
        decode_responses=False,
    )


class RedisStore:
    """A ``StateStore`` on Redis; raises ``StateUnavailable`` when Redis fails."""

    backend = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str = "mixroute:") -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)
        self._incr_window = client.register_script(_INCR_WINDOW)
        self._circuit_failure = client.register_script(_CIRCUIT_FAILURE)
        self._circuit_read = client.register_script(_CIRCUIT_READ)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "mixroute:", timeout_s: float = 0.5
    ) -> RedisStore:
        return cls(connect(url, timeout_s=timeout_s), prefix)

    async def ping(self) -> bool:
        try:
            with as_state_unavailable():
                return bool(await self.client.ping())
        except StateUnavailable:
            return False

    async def close(self) -> None:
        await self.client.aclose()

    # Key/value.

    async def get(self, key: str) -> str | None:
        with as_state_unavailable():
            raw = await self.client.get(self._k("kv", key))
        return None if raw is None else _text(raw)

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        px = None if ttl_s is None else _ms(ttl_s)
        with as_state_unavailable():
            await self.client.set(self._k("kv", key), value, px=px)

    async def set_if_absent(
        self, key: str, value: str, ttl_s: float | None = None
    ) -> bool:
        px = None if ttl_s is None else _ms(ttl_s)
        with as_state_unavailable():
            done = await self.client.set(self._k("kv", key), value, px=px, nx=True)
        return bool(done)

    async def delete(self, key: str) -> None:
        with as_state_unavailable():
            await self.client.delete(self._k("kv", key))

    async def touch(self, key: str, ttl_s: float) -> bool:
        with as_state_unavailable():
            return bool(await self.client.pexpire(self._k("kv", key), _ms(ttl_s)))

    # Counters.

    async def incr_window(self, key: str, amount: int, window_s: float) -> WindowCount:
        with as_state_unavailable():
            count, ttl_ms = await self._incr_window(
                keys=[self._k("win", key)], args=[int(amount), _ms(window_s)]
            )
        return WindowCount(count=int(count), reset_in_s=int(ttl_ms) / 1000)

    # Budgets.

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool:
        args = [to_nano(amount), to_nano(limit), _ms(ttl_s)]
        with as_state_unavailable():
            done = await self._reserve(keys=[self._k("bud", key)], args=args)
        return bool(done)

    async def settle(self, key: str, reserved: float, actual: float) -> None:
        delta = to_nano(actual) - to_nano(reserved)
        with as_state_unavailable():
            await self._settle(keys=[self._k("bud", key)], args=[delta])

    async def amount(self, key: str) -> float:
        with as_state_unavailable():
            raw = await self.client.get(self._k("bud", key))
        return 0.0 if raw is None else from_nano(int(raw))

    # Circuit breakers.

    async def record_failure(
        self, model: str, *, failures: int, window_s: float, cooldown_s: float
    ) -> CircuitState:
        args: list[int | str] = [
            failures,
            _ms(window_s),
            _ms(cooldown_s),
            uuid.uuid4().hex,
        ]
        with as_state_unavailable():
            count, open_ms = await self._circuit_failure(
                keys=self._circuit_keys(model), args=args
            )
        return self._circuit_state(int(count), int(open_ms))

    async def record_success(self, model: str) -> None:
        with as_state_unavailable():
            await self.client.delete(*self._circuit_keys(model))

    async def open_circuit(self, model: str, cooldown_s: float) -> CircuitState:
        failures_key, open_key = self._circuit_keys(model)
        with as_state_unavailable():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(failures_key)
                pipe.set(open_key, "1", px=_ms(cooldown_s))
                await pipe.execute()
        return self._circuit_state(0, _ms(cooldown_s))

    async def circuit(self, model: str) -> CircuitState:
        with as_state_unavailable():
            count, open_ms = await self._circuit_read(keys=self._circuit_keys(model))
        return self._circuit_state(int(count), int(open_ms))

    # Aggregates.

    async def hincr(
        self, key: str, field: str, amount: float, ttl_s: float | None = None
    ) -> float:
        name = self._k("h", key)
        with as_state_unavailable():
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hincrbyfloat(name, field, amount)
                if ttl_s is not None:
                    pipe.pexpire(name, _ms(ttl_s))
                results = await pipe.execute()
        return float(results[0])

    async def hgetall(self, key: str) -> dict[str, float]:
        with as_state_unavailable():
            raw = await self.client.hgetall(self._k("h", key))
        return {_text(k): float(v) for k, v in raw.items()}

    # Helpers.

    def _k(self, kind: str, key: str) -> str:
        return f"{self.prefix}{kind}:{key}"

    def _circuit_keys(self, model: str) -> list[str]:
        base = f"{self.prefix}cb:{{{model}}}"
        return [f"{base}:f", f"{base}:o"]

    @staticmethod
    def _circuit_state(count: int, open_ms: int) -> CircuitState:
        if open_ms > 0:
            return CircuitState(failures=0, open_until=time.time() + open_ms / 1000)
        return CircuitState(failures=count, open_until=None)
