"""Redis first, local memory when Redis is gone: no request fails for state.

While Redis answers, every call goes to it. The first call that fails flips the
store to *degraded*: one WARNING is logged for the whole outage, that call and
every later one are served by the local ``MemoryStore``, and a background ping
re-probes Redis at most every ``reprobe_s``. When a probe succeeds the store
logs one INFO line and returns to Redis.

What degraded mode means for correctness: each replica then enforces limits,
budgets and circuits on its own, so a fleet of N replicas may admit up to N
times a shared budget until Redis returns. Local state written during the
outage is not copied back; Redis state from before the outage is used again
(so a reservation made before the outage and settled during it stays at its
reserved amount in Redis until the budget period ends).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mixroute.state.base import CircuitState, StateStore, StateUnavailable, WindowCount
from mixroute.state.memory import MemoryStore

log = logging.getLogger("mixroute.state")
T = TypeVar("T")


class FailoverStore:
    """A ``StateStore`` over a shared ``primary`` with a local stand-in.

    Never raises ``StateUnavailable``. ``degraded`` tells whether calls are
    currently served locally (for ``/readyz`` and metrics).
    """

    def __init__(
        self,
        primary: StateStore,
        local: StateStore | None = None,
        *,
        reprobe_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.local: StateStore = local if local is not None else MemoryStore()
        self.backend = f"{primary.backend}+{self.local.backend}"
        self.reprobe_s = reprobe_s
        self._clock = clock
        self._degraded = False
        self._next_probe = 0.0
        self._probe: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        return self._degraded

    async def ping(self) -> bool:
        """Whether the primary answers now; a success ends a degraded period."""
        ok = await self.primary.ping()
        if ok and self._degraded:
            self._recover()
        return ok

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self.primary.close()
        await self.local.close()

    async def get(self, key: str) -> str | None:
        return await self._call(lambda s: s.get(key))

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        await self._call(lambda s: s.set(key, value, ttl_s))

    async def set_if_absent(
        self, key: str, value: str, ttl_s: float | None = None
    ) -> bool:
        return await self._call(lambda s: s.set_if_absent(key, value, ttl_s))

    async def delete(self, key: str) -> None:
        await self._call(lambda s: s.delete(key))

    async def touch(self, key: str, ttl_s: float) -> bool:
        return await self._call(lambda s: s.touch(key, ttl_s))

    async def incr_window(self, key: str, amount: int, window_s: float) -> WindowCount:
        return await self._call(lambda s: s.incr_window(key, amount, window_s))

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool:
        return await self._call(lambda s: s.reserve(key, amount, limit, ttl_s))

    async def settle(self, key: str, reserved: float, actual: float) -> None:
        await self._call(lambda s: s.settle(key, reserved, actual))

    async def amount(self, key: str) -> float:
        return await self._call(lambda s: s.amount(key))

    async def record_failure(
        self, model: str, *, failures: int, window_s: float, cooldown_s: float
    ) -> CircuitState:
        return await self._call(
            lambda s: s.record_failure(
                model, failures=failures, window_s=window_s, cooldown_s=cooldown_s
            )
        )

    async def record_success(self, model: str) -> None:
        await self._call(lambda s: s.record_success(model))

    async def open_circuit(self, model: str, cooldown_s: float) -> CircuitState:
        return await self._call(lambda s: s.open_circuit(model, cooldown_s))

    async def circuit(self, model: str) -> CircuitState:
        return await self._call(lambda s: s.circuit(model))

    async def hincr(
        self, key: str, field: str, amount: float, ttl_s: float | None = None
    ) -> float:
        return await self._call(lambda s: s.hincr(key, field, amount, ttl_s))

    async def hgetall(self, key: str) -> dict[str, float]:
        return await self._call(lambda s: s.hgetall(key))

    async def _call(self, op: Callable[[StateStore], Awaitable[T]]) -> T:
        if self._degraded:
            self._schedule_probe()
            return await op(self.local)
        try:
            return await op(self.primary)
        except StateUnavailable as exc:
            self._degrade(exc)
            return await op(self.local)

    def _degrade(self, exc: StateUnavailable) -> None:
        if self._degraded:
            return
        self._degraded = True
        self._next_probe = self._clock() + self.reprobe_s
        log.warning(
            "Shared state (%s) is unavailable, serving from local memory until it "
            "returns; limits and budgets now hold per replica: %s",
            self.primary.backend,
            exc,
        )

    def _recover(self) -> None:
        self._degraded = False
        log.info(
            "Shared state (%s) is back; local fallback ended", self.primary.backend
        )

    def _schedule_probe(self) -> None:
        now = self._clock()
        if now < self._next_probe or (self._probe and not self._probe.done()):
            return
        self._next_probe = now + self.reprobe_s
        self._probe = asyncio.create_task(self._probe_primary())

    async def _probe_primary(self) -> None:
        if await self.primary.ping() and self._degraded:
            self._recover()
