"""The state store: what replicas share (sessions, limits, budgets, circuits, A/B).

Every gateway component that keeps state between requests talks to a
``StateStore``, never to Redis or a dict directly, so the same code runs in one
process (``MemoryStore``) and across many replicas (``RedisStore``, wrapped in
``FailoverStore`` so a lost Redis degrades to local state instead of failing).

Conventions shared by every implementation:

- Keys are plain strings chosen by the caller (``"pin:<session>"``); the store
  adds its own namespace prefix. Values are strings.
- Durations are seconds (float); a ``ttl_s`` of ``None`` means no expiry.
- Budget amounts are floats in the caller's unit (USD for spend, or a count);
  stores keep them as integer billionths so concurrent additions never drift.
  The budget methods match ``mixroute.policy.store.PolicyStore``, so any
  ``StateStore`` can be handed to the policy layer as it is.
- Times returned to callers (``open_until``) are Unix epoch seconds, because
  they are compared across processes.
- Every method is a coroutine. Errors from the backend (Redis gone) surface as
  ``StateUnavailable``; ``FailoverStore`` is the one place that catches them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from mixroute.errors import MixrouteError

NANO = 1_000_000_000  # budget fixed-point scale
_NANO_MAX = 2**62


class StateUnavailable(MixrouteError):
    """The backing store cannot be reached or failed; local state may stand in."""


@dataclass(frozen=True)
class WindowCount:
    """A fixed-window counter after an increment.

    ``count`` is the total within the current window including this increment;
    ``reset_in_s`` is how long until the window ends and the count restarts.
    """

    count: int
    reset_in_s: float


@dataclass(frozen=True)
class CircuitState:
    """A model's shared circuit: recent failures and, when open, until when.

    ``open_until`` is Unix epoch seconds, or ``None`` while the circuit is
    closed. ``failures`` counts failures inside the current window.
    """

    failures: int
    open_until: float | None

    @property
    def is_open(self) -> bool:
        return self.open_until is not None


def to_nano(amount: float) -> int:
    """``amount`` in integer billionths (rounded), the unit budgets are kept in.

    Clamped to ±2**62 (about ±4.6e9 units, infinity included) so sums of two
    stay inside Redis's signed 64-bit integers.
    """
    if math.isnan(amount):
        raise ValueError("a budget amount must be a number, not NaN")
    bounded = max(-1e10, min(1e10, amount))  # round(inf) would raise
    return max(-_NANO_MAX, min(_NANO_MAX, round(bounded * NANO)))


def from_nano(amount_nano: int) -> float:
    return amount_nano / NANO


@runtime_checkable
class StateStore(Protocol):
    """Shared state for every replica; see the module docstring for conventions."""

    backend: str

    async def ping(self) -> bool:
        """Whether the backend answers now. Never raises."""
        ...

    async def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...

    # Key/value (session pins, A/B assignment, probe slots).

    async def get(self, key: str) -> str | None:
        """The value under ``key``, or ``None`` if missing or expired."""
        ...

    async def set(self, key: str, value: str, ttl_s: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any value and its TTL."""
        ...

    async def set_if_absent(
        self, key: str, value: str, ttl_s: float | None = None
    ) -> bool:
        """Store ``value`` only if ``key`` is missing; True if this call stored it.

        The check and the write are one atomic step, so among concurrent callers
        on any number of replicas exactly one wins (first pin, A/B assignment,
        the single half-open probe of a circuit).
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    async def touch(self, key: str, ttl_s: float) -> bool:
        """Restart ``key``'s TTL (sliding expiry); False if the key is missing."""
        ...

    # Counters (rate limits).

    async def incr_window(self, key: str, amount: int, window_s: float) -> WindowCount:
        """Add ``amount`` to a fixed-window counter and return the new total.

        The window starts at the first increment after the previous window
        expired and lasts ``window_s``: a fixed window anchored on first use,
        not on the wall clock, so replicas need no clock agreement. A caller
        allowing N per window admits the request when ``count <= N``.
        """
        ...

    # Budgets.

    async def reserve(
        self, key: str, amount: float, limit: float, ttl_s: float
    ) -> bool:
        """Atomically reserve ``amount`` if spent + reserved stays within limit.

        Returns True and adds the amount when ``current + amount <= limit``,
        otherwise changes nothing and returns False. The budget period starts
        with the first reservation and the key expires after ``ttl_s``
        (for a calendar period, pass the seconds left in it). Atomic across
        replicas: ten concurrent reservations on a budget that covers two see
        exactly two succeed.
        """
        ...

    async def settle(self, key: str, reserved: float, actual: float) -> None:
        """Replace a reservation with the actual cost (``actual - reserved``).

        Pass ``actual=0`` to release a reservation that was never used. If
        the period expired since the reservation, the difference is dropped
        with the old period rather than charged to the new one.
        """
        ...

    async def amount(self, key: str) -> float:
        """Spent plus reserved in the current period (0 when none)."""
        ...

    # Circuit breakers, per model, shared by replicas.

    async def record_failure(
        self, model: str, *, failures: int, window_s: float, cooldown_s: float
    ) -> CircuitState:
        """Count a failure; open the circuit for ``cooldown_s`` at ``failures``.

        Failures older than ``window_s`` are forgotten (sliding window). When
        the count reaches ``failures`` the circuit opens and the count resets.
        A failure while open does not extend it; use ``open_circuit`` for that.
        """
        ...

    async def record_success(self, model: str) -> None:
        """Close the circuit and forget its failures."""
        ...

    async def open_circuit(self, model: str, cooldown_s: float) -> CircuitState:
        """Open the circuit now for ``cooldown_s`` (a failed half-open probe)."""
        ...

    async def circuit(self, model: str) -> CircuitState:
        """The circuit as every replica sees it now."""
        ...

    # Aggregates (A/B outcomes, feedback scores).

    async def hincr(
        self, key: str, field: str, amount: float, ttl_s: float | None = None
    ) -> float:
        """Add ``amount`` to ``field`` of hash ``key``; returns the new value.

        ``ttl_s`` (re)sets the whole hash's expiry when given.
        """
        ...

    async def hgetall(self, key: str) -> dict[str, float]:
        """Every field of hash ``key`` with its value; empty when missing."""
        ...
