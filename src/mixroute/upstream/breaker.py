"""A per-model circuit breaker: closed, open after failures, half-open probe."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

from mixroute.config.schema import CircuitBreakerConfig

State = Literal["closed", "open", "half_open"]


class Breaker(Protocol):
    """What the upstream pool needs of a breaker: this module's, or the shared
    one in ``mixroute.state.circuits`` that every replica sees."""

    @property
    def state(self) -> State: ...

    def allow(self) -> bool: ...

    def record_success(self) -> None: ...

    def record_failure(self) -> None: ...

    def release_probe(self) -> None: ...


class CircuitBreaker:
    """Counts failures in a sliding window and refuses calls while open.

    After ``failures`` failures within ``window_s`` the circuit opens; after
    ``cooldown_s`` exactly one probe call is let through (half-open). Its
    success closes the circuit, its failure opens it for another cool-down.
    Single-threaded: used from the event loop only.
    """

    def __init__(
        self,
        config: CircuitBreakerConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.config.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, only the one probe."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures.clear()
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        now = self._clock()
        if self._opened_at is not None:
            # A failed probe (or a straggler) restarts the cool-down.
            self._opened_at = now
            self._probing = False
            return
        self._failures.append(now)
        horizon = now - self.config.window_s
        while self._failures and self._failures[0] < horizon:
            self._failures.popleft()
        if len(self._failures) >= self.config.failures:
            self._opened_at = now
            self._failures.clear()

    def release_probe(self) -> None:
        """Give back a half-open probe slot that ended neither way (cancelled)."""
        self._probing = False
