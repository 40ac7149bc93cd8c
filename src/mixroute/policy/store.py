"""The few state operations the policy layer needs, and an in-memory store.

``PolicyStore`` is deliberately small: the shared ``StateStore`` (memory or
Redis, ``mixroute.state.base``) satisfies it as it is, so replicas share
budgets, pins and A/B counters by handing the engine that store.
``MemoryPolicyStore`` reads the engine's clock for TTLs, which lets tests move
time with a ``FakeClock``. Amounts are
floats (USD, counts, milliseconds); keys are plain strings the engine builds.

Atomicity: ``reserve`` must check and add in one step. In memory that holds
because nothing awaits between the check and the add; Redis does it in a Lua
script.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mixroute.policy.clock import Clock, SystemClock


class PolicyStore(Protocol):
    """Key/value with TTL, atomic budget reservation and hash counters."""

    async def get(self, key: str) -> str | None:
        """The value, or None when missing or expired."""
        ...

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store ``value``; ``ttl_s`` seconds until it expires (None: never)."""
        ...

    async def set_if_absent(self, key: str, value: str, ttl_s: float) -> bool:
        """Store only if missing; True when this call stored it."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` (no error when missing)."""
        ...

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool:
        """Atomically add ``amount`` to the total at ``key`` if the result stays
        within ``limit``; True when added. The total expires ``ttl_s`` after it
        is created."""
        ...

    async def settle(self, key: str, reserved: float, actual: float) -> None:
        """Replace a reservation by the real amount (total += actual - reserved)."""
        ...

    async def amount(self, key: str) -> float:
        """The current total at a budget key (0 when missing)."""
        ...

    async def hincr(self, key: str, field: str, amount: float) -> float:
        """Add ``amount`` to ``field`` of the hash at ``key``; the new value."""
        ...

    async def hgetall(self, key: str) -> dict[str, float]:
        """Every field of the hash at ``key`` (empty when missing)."""
        ...


@dataclass
class _Entry:
    value: object
    expires: float | None


class MemoryPolicyStore:
    """One process's policy state in dictionaries; TTLs read ``clock``."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._data: dict[str, _Entry] = {}

    def _t(self) -> float:
        return self._clock.now().timestamp()

    def _live(self, key: str) -> _Entry | None:
        e = self._data.get(key)
        if e is not None and e.expires is not None and e.expires <= self._t():
            del self._data[key]
            return None
        return e

    async def get(self, key: str) -> str | None:
        e = self._live(key)
        return None if e is None else str(e.value)

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        expires = None if ttl_s is None else self._t() + ttl_s
        self._data[key] = _Entry(value, expires)

    async def set_if_absent(self, key: str, value: str, ttl_s: float) -> bool:
        if self._live(key) is not None:
            return False
        self._data[key] = _Entry(value, self._t() + ttl_s)
        return True

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool:
        e = self._live(key)
        total = 0.0 if e is None else float(e.value)  # type: ignore[arg-type]
        if total + amount > limit + 1e-12:
            return False
        if e is None:
            self._data[key] = _Entry(amount, self._t() + ttl_s)
        else:
            e.value = total + amount
        return True

    async def settle(self, key: str, reserved: float, actual: float) -> None:
        e = self._live(key)
        if e is None:
            # The period rolled over while the call ran: the new period starts
            # empty and the late cost belongs to the old one.
            return
        e.value = max(0.0, float(e.value) + actual - reserved)  # type: ignore[arg-type]

    async def amount(self, key: str) -> float:
        e = self._live(key)
        return 0.0 if e is None else float(e.value)  # type: ignore[arg-type]

    async def hincr(self, key: str, field: str, amount: float) -> float:
        e = self._live(key)
        if e is None:
            e = self._data[key] = _Entry({}, None)
        h: dict[str, float] = e.value  # type: ignore[assignment]
        h[field] = h.get(field, 0.0) + amount
        return h[field]

    async def hgetall(self, key: str) -> dict[str, float]:
        e = self._live(key)
        return {} if e is None else dict(e.value)  # type: ignore[call-overload]
