"""Per-key rate limits (requests and tokens per minute) and spend budgets.

Counts live behind ``Counters``, a two-method interface: the in-memory one
here serves one process; a shared store (Redis) can implement the same two
methods so that every replica sees the same counts.

Requests and tokens use a sliding window estimated from two fixed one-minute
windows: the previous window's count is weighted by how much of it still
overlaps the last sixty seconds. It never lets through more than twice the
limit in any sixty seconds and needs two counters per key.
"""

from __future__ import annotations

import asyncio
import calendar
import math
import time
from collections.abc import Callable
from typing import Protocol

from mixroute.config.schema import LimitsConfig
from mixroute.errors import ClientError
from mixroute.state.keys import ClientKey

WINDOW_S = 60.0


class Counters(Protocol):
    """Integer counters that expire; ``incr`` returns the new value."""

    async def incr(self, name: str, amount: int, ttl_s: float) -> int: ...

    async def get(self, name: str) -> int: ...


class MemoryCounters:
    """Counters in this process's memory, expired lazily."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._values: dict[str, tuple[int, float]] = {}
        self._lock = asyncio.Lock()

    async def incr(self, name: str, amount: int, ttl_s: float) -> int:
        async with self._lock:
            now = self._clock()
            value, expires = self._values.get(name, (0, 0.0))
            if expires <= now:
                value, expires = 0, now + ttl_s
            value += amount
            self._values[name] = (value, expires)
            if len(self._values) > 100_000:
                self._expire(now)
            return value

    async def get(self, name: str) -> int:
        value, expires = self._values.get(name, (0, 0.0))
        return value if expires > self._clock() else 0

    def _expire(self, now: float) -> None:
        for name in [n for n, (_, exp) in self._values.items() if exp <= now]:
            del self._values[name]


def _too_many(message: str, retry_after: float, code: str) -> ClientError:
    seconds = max(1, math.ceil(retry_after))
    return ClientError(
        message,
        status=429,
        code=code,
        type="rate_limit_error",
        headers={"retry-after": str(seconds)},
    )


class RateLimiter:
    """Admits or refuses a key's request by its requests- and tokens-per-minute."""

    def __init__(
        self,
        counters: Counters | None = None,
        *,
        defaults: LimitsConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self.counters: Counters = counters or MemoryCounters(clock)
        self.defaults = defaults or LimitsConfig()

    def _limits(self, key: ClientKey) -> tuple[int | None, int | None]:
        return key.rpm or self.defaults.rpm, key.tpm or self.defaults.tpm

    async def _estimate(self, kind: str, key_id: str, now: float) -> tuple[float, int]:
        window = int(now // WINDOW_S)
        current = await self.counters.get(f"rl:{kind}:{key_id}:{window}")
        previous = await self.counters.get(f"rl:{kind}:{key_id}:{window - 1}")
        overlap = 1.0 - (now - window * WINDOW_S) / WINDOW_S
        return previous * overlap + current, window

    async def _add(self, kind: str, key_id: str, window: int, amount: int) -> None:
        if amount > 0:
            await self.counters.incr(
                f"rl:{kind}:{key_id}:{window}", amount, 2 * WINDOW_S + 1
            )

    async def admit(self, key: ClientKey | None, prompt_tokens: int = 0) -> None:
        """Count one request and its prompt tokens, or raise a 429 naming the limit.

        The 429 carries ``Retry-After`` in whole seconds. ``None`` (auth off)
        is always admitted.
        """
        if key is None:
            return
        rpm, tpm = self._limits(key)
        now = self._clock()
        window_end = (int(now // WINDOW_S) + 1) * WINDOW_S
        wait = window_end - now

        if rpm is not None:
            used, window = await self._estimate("req", key.key_id, now)
            if used + 1 > rpm:
                raise _too_many(
                    f'Rate limit reached for client key "{key.name}": requests '
                    f"per minute (rpm) is {rpm}. Retry after {max(1, math.ceil(wait))} "
                    "s.",
                    wait,
                    "rate_limit_exceeded",
                )
        if tpm is not None:
            used_t, window = await self._estimate("tok", key.key_id, now)
            if used_t + prompt_tokens > tpm:
                raise _too_many(
                    f'Rate limit reached for client key "{key.name}": tokens per '
                    f"minute (tpm) is {tpm}; this request needs about "
                    f"{prompt_tokens}. Retry after {max(1, math.ceil(wait))} s.",
                    wait,
                    "rate_limit_exceeded",
                )

        window = int(now // WINDOW_S)
        if rpm is not None:
            await self._add("req", key.key_id, window, 1)
        if tpm is not None:
            await self._add("tok", key.key_id, window, prompt_tokens)

    async def record_tokens(
        self, key: ClientKey | None, completion_tokens: int
    ) -> None:
        """Add the answer's tokens once they are known."""
        if key is None or self._limits(key)[1] is None:
            return
        window = int(self._clock() // WINDOW_S)
        await self._add("tok", key.key_id, window, completion_tokens)


def _period_bounds(period: str, now: float) -> tuple[str, float]:
    """A label for the UTC period holding ``now`` and the seconds until it ends."""
    t = time.gmtime(now)
    if period == "hour":
        start = now - (now % 3600)
        return time.strftime("%Y%m%d%H", t), start + 3600 - now
    if period == "month":
        next_month = (t.tm_year + t.tm_mon // 12, t.tm_mon % 12 + 1)
        end = calendar.timegm((*next_month, 1, 0, 0, 0))
        return time.strftime("%Y%m", t), end - now
    start = now - (now % 86400)
    return time.strftime("%Y%m%d", t), start + 86400 - now


class BudgetGuard:
    """Holds each key to its ``--budget-usd`` per hour, day or month (UTC).

    Spend is counted in micro-dollars so ``Counters`` stay integers.
    """

    def __init__(
        self, counters: Counters | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._clock = clock
        self.counters: Counters = counters or MemoryCounters(clock)

    async def check(self, key: ClientKey | None) -> None:
        """Raise a 429 (code ``budget_exceeded``) when the key has spent its budget."""
        if key is None or key.budget_usd is None:
            return
        period = key.budget_period or "day"
        label, remaining = _period_bounds(period, self._clock())
        spent = await self.counters.get(f"budget:{key.key_id}:{label}") / 1e6
        if spent >= key.budget_usd:
            raise _too_many(
                f'The client key "{key.name}" has spent its budget of '
                f"{key.budget_usd:.2f} USD per {period} (spent {spent:.2f} USD).",
                remaining,
                "budget_exceeded",
            )

    async def record(self, key: ClientKey | None, cost_usd: float) -> None:
        """Add a finished request's cost to the key's current period."""
        if key is None or key.budget_usd is None or cost_usd <= 0:
            return
        period = key.budget_period or "day"
        label, remaining = _period_bounds(period, self._clock())
        await self.counters.incr(
            f"budget:{key.key_id}:{label}", round(cost_usd * 1e6), remaining + 60
        )
