"""The in-process state store: the embedded default, and the fallback for Redis.

Everything lives in dicts owned by the event loop. No method awaits anything
between its read and its write, so each operation is atomic with respect to
other coroutines, which is all the atomicity one process needs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mixroute.state.base import CircuitState, WindowCount, from_nano, to_nano

# Expired entries are dropped when read; a full sweep every this many writes
# bounds the memory held by keys nobody reads again.
_SWEEP_EVERY = 1024


@dataclass
class _Circuit:
    failures: deque[float] = field(default_factory=deque)
    open_until: float | None = None


class MemoryStore:
    """A ``StateStore`` in this process's memory; lost on restart, not shared."""

    backend = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._kv: dict[str, tuple[str, float | None]] = {}
        self._windows: dict[str, tuple[int, float]] = {}
        self._budgets: dict[str, tuple[int, float]] = {}
        self._hashes: dict[str, tuple[dict[str, float], float | None]] = {}
        self._circuits: dict[str, _Circuit] = {}
        self._writes = 0

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    # Key/value.

    async def get(self, key: str) -> str | None:
        item = self._kv.get(key)
        if item is None:
            return None
        if self._expired(item[1]):
            del self._kv[key]
            return None
        return item[0]

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        self._kv[key] = (value, self._deadline(ttl_s))
        self._count_write()

    async def set_if_absent(
        self, key: str, value: str, ttl_s: float | None = None
    ) -> bool:
        if await self.get(key) is not None:
            return False
        self._kv[key] = (value, self._deadline(ttl_s))
        self._count_write()
        return True

    async def delete(self, key: str) -> None:
        self._kv.pop(key, None)

    async def touch(self, key: str, ttl_s: float) -> bool:
        value = await self.get(key)
        if value is None:
            return False
        self._kv[key] = (value, self._deadline(ttl_s))
        return True

    # Counters.

    async def incr_window(self, key: str, amount: int, window_s: float) -> WindowCount:
        now = self._clock()
        count, ends = self._windows.get(key, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + window_s
        count += amount
        self._windows[key] = (count, ends)
        self._count_write()
        return WindowCount(count=count, reset_in_s=min(window_s, ends - now))

    # Budgets.

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool:
        now = self._clock()
        current, ends = self._live_budget(key, now)
        add = to_nano(amount)
        if current + add > to_nano(limit):
            return False
        if ends is None:
            ends = now + ttl_s
        self._budgets[key] = (current + add, ends)
        self._count_write()
        return True

    async def settle(self, key: str, reserved: float, actual: float) -> None:
        current, ends = self._live_budget(key, self._clock())
        if ends is None:
            return
        delta = to_nano(actual) - to_nano(reserved)
        self._budgets[key] = (max(0, current + delta), ends)

    async def amount(self, key: str) -> float:
        current, _ = self._live_budget(key, self._clock())
        return from_nano(current)

    # Circuit breakers.

    async def record_failure(
        self, model: str, *, failures: int, window_s: float, cooldown_s: float
    ) -> CircuitState:
        now = self._clock()
        circuit = self._circuits.setdefault(model, _Circuit())
        if circuit.open_until is not None and circuit.open_until > now:
            return CircuitState(failures=0, open_until=circuit.open_until)
        circuit.open_until = None
        circuit.failures.append(now)
        while circuit.failures and circuit.failures[0] <= now - window_s:
            circuit.failures.popleft()
        if len(circuit.failures) >= failures:
            circuit.failures.clear()
            circuit.open_until = now + cooldown_s
        return CircuitState(len(circuit.failures), circuit.open_until)

    async def record_success(self, model: str) -> None:
        self._circuits.pop(model, None)

    async def open_circuit(self, model: str, cooldown_s: float) -> CircuitState:
        circuit = self._circuits.setdefault(model, _Circuit())
        circuit.failures.clear()
        circuit.open_until = self._clock() + cooldown_s
        return CircuitState(failures=0, open_until=circuit.open_until)

    async def circuit(self, model: str) -> CircuitState:
        circuit = self._circuits.get(model)
        if circuit is None:
            return CircuitState(failures=0, open_until=None)
        now = self._clock()
        if circuit.open_until is not None and circuit.open_until <= now:
            circuit.open_until = None
        # The window length is only known to record_failure; stale entries are
        # trimmed there, so this count may include failures about to expire.
        return CircuitState(len(circuit.failures), circuit.open_until)

    # Aggregates.

    async def hincr(
        self, key: str, field: str, amount: float, ttl_s: float | None = None
    ) -> float:
        values, ends = self._live_hash(key)
        values[field] = values.get(field, 0.0) + amount
        if ttl_s is not None:
            ends = self._deadline(ttl_s)
        self._hashes[key] = (values, ends)
        self._count_write()
        return values[field]

    async def hgetall(self, key: str) -> dict[str, float]:
        values, _ = self._live_hash(key)
        return dict(values)

    # Helpers.

    def _deadline(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self._clock() + ttl_s

    def _expired(self, deadline: float | None) -> bool:
        return deadline is not None and deadline <= self._clock()

    def _live_budget(self, key: str, now: float) -> tuple[int, float | None]:
        item = self._budgets.get(key)
        if item is None or item[1] <= now:
            self._budgets.pop(key, None)
            return 0, None
        return item

    def _live_hash(self, key: str) -> tuple[dict[str, float], float | None]:
        item = self._hashes.get(key)
        if item is None or self._expired(item[1]):
            self._hashes.pop(key, None)
            return {}, None
        return item

    def _count_write(self) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._sweep()

    def _sweep(self) -> None:
        now = self._clock()
        self._kv = {k: v for k, v in self._kv.items() if v[1] is None or v[1] > now}
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        self._budgets = {k: v for k, v in self._budgets.items() if v[1] > now}
        self._hashes = {
            k: v for k, v in self._hashes.items() if v[1] is None or v[1] > now
        }
