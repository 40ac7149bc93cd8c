"""Live model health: error-rate and latency EWMAs, circuits, probes.

Each replica keeps its own view, fed by every outcome (``record``) and by the
upstream circuit breakers (``report_circuit``, or a ``breaker_state`` lookup
the gateway hands in). A model is unhealthy while its breaker is open, or —
after ``min_samples`` calls — while its failure EWMA exceeds
``max_error_rate`` or its latency EWMA exceeds ``max_latency_ms``. An
unhealthy model rests for ``cooldown_s``; then exactly one request may probe
it (half-open). The probe's success resets the model's statistics; its
failure starts another rest. The engine moves unhealthy models behind healthy
ones rather than dropping them, so a request still has somewhere to go when
everything is down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mixroute.config.policies import HealthConfig

CircuitState = Literal["closed", "open", "half_open"]


@dataclass
class ModelHealth:
    """One model's live statistics (mutable; owned by ``HealthView``)."""

    samples: int = 0
    error_ewma: float = 0.0
    latency_ewma_ms: float = 0.0
    rested_at: float | None = None
    probe_at: float | None = None
    circuit: CircuitState = "closed"


class HealthView:
    """What the policy knows about each model's health, per replica."""

    def __init__(
        self,
        config: HealthConfig,
        breaker_state: Callable[[str], CircuitState | None] | None = None,
    ) -> None:
        self.config = config
        self.breaker_state = breaker_state
        self._models: dict[str, ModelHealth] = {}

    def _get(self, model: str) -> ModelHealth:
        h = self._models.get(model)
        if h is None:
            h = self._models[model] = ModelHealth()
        return h

    def report_circuit(self, model: str, state: CircuitState) -> None:
        """Hook for the upstream circuit breaker: its state changed."""
        self._get(model).circuit = state

    def snapshot(self, model: str) -> ModelHealth:
        """A copy of the model's statistics."""
        h = self._get(model)
        return ModelHealth(**vars(h))

    def _circuit(self, model: str) -> CircuitState:
        if self.breaker_state is not None:
            state = self.breaker_state(model)
            if state is not None:
                return state
        return self._get(model).circuit

    def _sick(self, h: ModelHealth) -> bool:
        if h.samples < self.config.min_samples:
            return False
        if h.error_ewma > self.config.max_error_rate:
            return True
        limit = self.config.max_latency_ms
        return limit is not None and h.latency_ewma_ms > limit

    def available(self, model: str, now: float, *, claim: bool = True) -> bool:
        """Whether a request may go to ``model`` now. In half-open, the first
        caller (with ``claim``) takes the single probe; others are refused."""
        if not self.config.enabled:
            return True
        if self._circuit(model) == "open":
            return False
        h = self._get(model)
        if h.rested_at is None:
            return True
        if now - h.rested_at < self.config.cooldown_s:
            return False
        # A probe whose outcome never came back frees its slot after a cool-down.
        if h.probe_at is not None and now - h.probe_at < self.config.cooldown_s:
            return False
        if claim:
            h.probe_at = now
        return True

    def record(self, model: str, ok: bool, latency_ms: float, now: float) -> None:
        """One call's outcome on ``model`` (``now`` in epoch seconds)."""
        h = self._get(model)
        if h.rested_at is not None and h.probe_at is not None:
            h.probe_at = None
            if ok:
                self._models[model] = ModelHealth(circuit=h.circuit)
            else:
                h.rested_at = now
            return
        a = self.config.alpha
        h.samples += 1
        h.error_ewma = (1 - a) * h.error_ewma + a * (0.0 if ok else 1.0)
        if ok:
            if h.latency_ewma_ms == 0.0:
                h.latency_ewma_ms = latency_ms
            else:
                h.latency_ewma_ms = (1 - a) * h.latency_ewma_ms + a * latency_ms
        if h.rested_at is None and self._sick(h):
            h.rested_at = now
