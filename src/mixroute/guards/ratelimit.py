"""Per-key rate limits (requests and tokens per minute) and key budgets.

Counts live in the shared ``StateStore`` (``mixroute.state``): in memory for
one process, in Redis for many replicas, so every replica enforces the same
limit. Windows are the store's fixed one-minute windows, anchored on a key's
first request; a refused request gets ``Retry-After`` set to the seconds left
in its window.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Callable
from typing import Protocol

from mixroute.config.schema import LimitsConfig
from mixroute.errors import ClientError
from mixroute.state.base import WindowCount
from mixroute.state.keys import ClientKey
from mixroute.state.memory import MemoryStore

WINDOW_S = 60.0
# Budget spend is added with a reservation whose limit is never reached.
_NO_LIMIT = 1e9


class Counters(Protocol):
    """The part of ``StateStore`` the limits need."""

    async def incr_window(
        self, key: str, amount: int, window_s: float
    ) -> WindowCount: ...

    async def amount(self, key: str) -> float: ...

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool: ...


def _too_many(message: str, retry_after: float, code: str) -> ClientError:
    return ClientError(
        message,
        status=429,
        code=code,
        type="rate_limit_error",
        headers={"retry-after": str(max(1, math.ceil(retry_after)))},
    )


class RateLimiter:
    """Admits or refuses a key's request by its requests- and tokens-per-minute."""

    def __init__(
        self, store: Counters | None = None, *, defaults: LimitsConfig | None = None
    ) -> None:
        self.store: Counters = store or MemoryStore()
        self.defaults = defaults or LimitsConfig()

    def limits(self, key: ClientKey) -> tuple[int | None, int | None]:
        """The key's (rpm, tpm): its own, else the ``limits:`` defaults."""
        return key.rpm or self.defaults.rpm, key.tpm or self.defaults.tpm

    async def admit(self, key: ClientKey | None, prompt_tokens: int = 0) -> None:
        """Count one request and its prompt tokens, or raise a 429 naming the limit.

        The 429 carries ``Retry-After`` in whole seconds. ``None`` (auth off)
        is always admitted.
        """
        if key is None:
            return
        rpm, tpm = self.limits(key)
        if rpm is not None:
            got = await self.store.incr_window(f"rl:req:{key.key_id}", 1, WINDOW_S)
            if got.count > rpm:
                raise _too_many(
                    f'Rate limit reached for client key "{key.name}": requests '
                    f"per minute (rpm) is {rpm}. Retry after "
                    f"{max(1, math.ceil(got.reset_in_s))} s.",
                    got.reset_in_s,
                    "rate_limit_exceeded",
                )
        if tpm is not None:
            name = f"rl:tok:{key.key_id}"
            used = await self.store.incr_window(name, 0, WINDOW_S)
            if used.count + prompt_tokens > tpm:
                raise _too_many(
                    f'Rate limit reached for client key "{key.name}": tokens per '
                    f"minute (tpm) is {tpm}; this request needs about "
                    f"{prompt_tokens}. Retry after "
                    f"{max(1, math.ceil(used.reset_in_s))} s.",
                    used.reset_in_s,
                    "rate_limit_exceeded",
                )
            if prompt_tokens > 0:
                await self.store.incr_window(name, prompt_tokens, WINDOW_S)

    async def record_tokens(
        self, key: ClientKey | None, completion_tokens: int
    ) -> None:
        """Add the answer's tokens once they are known."""
        if key is None or completion_tokens <= 0 or self.limits(key)[1] is None:
            return
        await self.store.incr_window(
            f"rl:tok:{key.key_id}", completion_tokens, WINDOW_S
        )


def period_bounds(period: str, now: float) -> tuple[str, float]:
    """A label for the UTC hour, day or month holding ``now``, and seconds left."""
    t = time.gmtime(now)
    if period == "hour":
        return time.strftime("%Y%m%d%H", t), 3600 - now % 3600
    if period == "month":
        year, month = t.tm_year + t.tm_mon // 12, t.tm_mon % 12 + 1
        end = calendar.timegm((year, month, 1, 0, 0, 0))
        return time.strftime("%Y%m", t), end - now
    return time.strftime("%Y%m%d", t), 86400 - now % 86400


class BudgetGuard:
    """Holds each key to its ``keys create --budget-usd`` budget (UTC periods)."""

    def __init__(
        self, store: Counters | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store: Counters = store or MemoryStore(clock)
        self._clock = clock

    def _slot(self, key: ClientKey) -> tuple[str, str, float]:
        period = key.budget_period or "day"
        label, remaining = period_bounds(period, self._clock())
        return f"keybudget:{key.key_id}:{label}", period, remaining

    async def check(self, key: ClientKey | None) -> None:
        """Raise a 429 (code ``budget_exceeded``) when the key has spent its budget."""
        if key is None or key.budget_usd is None:
            return
        name, period, remaining = self._slot(key)
        spent = await self.store.amount(name)
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
        name, _, remaining = self._slot(key)
        await self.store.reserve(name, cost_usd, _NO_LIMIT, remaining + 60)
