"""A circuit breaker whose open state is shared by every replica.

``SharedCircuitBreaker`` has the synchronous interface of
``mixroute.upstream.breaker.CircuitBreaker`` (``state``, ``allow``,
``record_success``, ``record_failure``, ``release_probe``) so the upstream pool
can use either. It keeps the local breaker for its own decisions and mirrors
to the ``StateStore`` in background tasks: failures are counted in the store,
so failures on all replicas together open the circuit, and an open circuit
anywhere is seen here at the next refresh (at most ``refresh_s`` later).

Why not await the store on the request path: ``allow()`` runs before every
upstream call, and a Redis round trip there would add latency to every
request for a state that changes rarely. The price is a short lag.

After a shared cool-down ends each replica lets its own traffic through
again; the single half-open probe is per replica, not fleet-wide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from mixroute.config.schema import CircuitBreakerConfig
from mixroute.state.base import CircuitState, StateStore, StateUnavailable
from mixroute.upstream.breaker import CircuitBreaker, State

log = logging.getLogger("mixroute.state")


class SharedCircuitBreaker:
    """One model's breaker: local decisions, open state shared through a store."""

    def __init__(
        self,
        model: str,
        config: CircuitBreakerConfig,
        store: StateStore,
        *,
        refresh_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.config = config
        self.store = store
        self.refresh_s = refresh_s
        self._clock = clock
        self._local = CircuitBreaker(config)
        self._shared_open_until: float | None = None
        self._refreshed_at = float("-inf")
        self._shared_failures = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def state(self) -> State:
        self._maybe_refresh()
        if self._shared_open():
            return "open"
        return self._local.state

    def allow(self) -> bool:
        """Whether a call may go out now (local rules, and not open elsewhere)."""
        self._maybe_refresh()
        if self._shared_open():
            return False
        return self._local.allow()

    def record_success(self) -> None:
        self._local.record_success()
        if self._shared_failures or self._shared_open_until is not None:
            self._shared_failures = False
            self._shared_open_until = None
            self._spawn(self.store.record_success(self.model))

    def record_failure(self) -> None:
        was_probing = self._local.state == "half_open"
        self._local.record_failure()
        self._shared_failures = True
        if was_probing:
            self._spawn(self._apply(self.store.open_circuit(self.model, self._cool())))
            return
        failure = self.store.record_failure(
            self.model,
            failures=self.config.failures,
            window_s=self.config.window_s,
            cooldown_s=self._cool(),
        )
        self._spawn(self._apply(failure))

    def release_probe(self) -> None:
        self._local.release_probe()

    async def refresh(self) -> None:
        """Read the shared circuit now (tests, start-up)."""
        await self._apply(self.store.circuit(self.model))

    async def drain(self) -> None:
        """Wait for the background writes started so far (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _cool(self) -> float:
        return self.config.cooldown_s

    def _shared_open(self) -> bool:
        until = self._shared_open_until
        return until is not None and until > self._clock()

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if now - self._refreshed_at < self.refresh_s:
            return
        self._refreshed_at = now
        self._spawn(self.refresh())

    async def _apply(self, pending: Awaitable[CircuitState]) -> None:
        try:
            shared = await pending
        except StateUnavailable as exc:
            log.debug("circuit state for %s not shared: %s", self.model, exc)
            return
        self._shared_open_until = shared.open_until
        if shared.failures:
            self._shared_failures = True

    def _spawn(self, work: Awaitable[None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(_run(work))
        except RuntimeError:
            # No loop (a sync caller): the store is not consulted this time.
            if asyncio.iscoroutine(work):
                work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _run(work: Awaitable[None]) -> None:
    try:
        await work
    except StateUnavailable as exc:
        log.debug("circuit state not shared: %s", exc)
