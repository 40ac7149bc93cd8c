"""Observability: Prometheus metrics, the access log, tracing, live numbers.

One ``Observer`` per served app. The gateway tells it about each finished
request (its ledger row), each upstream failure and each cache lookup; it
feeds the metrics registry (``metrics.py``), the dashboard's live totals
(``live.py``) and carries the tracer (``tracing.py``). A config reload hands
the same observer to the new gateway, so counters never reset under Prometheus.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mixroute.config.schema import MixrouteConfig
from mixroute.state.ledger import UsageRow

from .live import LiveStats
from .metrics import Metrics
from .tracing import Attrs, Span, Tracer, build_tracer

__all__ = ["LiveStats", "Metrics", "Observer", "access_fields"]


class Observer:
    """Metrics, live totals and the tracer of one app."""

    def __init__(self, config: MixrouteConfig, *, tracer: Tracer | None = None) -> None:
        self.config = config
        self._circuits: Callable[[], Mapping[str, str]] = dict
        self.metrics = Metrics(
            config.route_names, config.model_names, circuits=self.circuits
        )
        self.live = LiveStats()
        self.tracer = tracer or build_tracer(config.observability.tracing)

    def bind(self, config: MixrouteConfig, breakers: Mapping[str, Any]) -> None:
        """Follow ``config`` (after a reload: its route and model names bound the
        labels) and read circuit states from ``breakers`` (model → breaker)."""
        self.config = config
        self.metrics.routes = frozenset(config.route_names)
        self.metrics.models = frozenset(config.model_names)
        self._circuits = lambda: {m: str(b.state) for m, b in breakers.items()}

    def circuits(self) -> Mapping[str, str]:
        """Model name → circuit state (closed, half_open, open)."""
        return self._circuits()

    def span(self, name: str, attrs: Attrs | None = None) -> Span:
        """A tracing span (a shared null context when tracing is off)."""
        return self.tracer.span(name, attrs)

    def finished(
        self,
        row: UsageRow,
        *,
        classify_ms: float | None = None,
        key_name: str | None = None,
    ) -> None:
        """Record one finished request, given its ledger row and the name of
        its client key (metrics label keys by name; the row holds the id)."""
        self.metrics.observe(row, classify_ms=classify_ms, key_name=key_name)
        self.live.add(row)

    def upstream_error(self, model: str, reason: str) -> None:
        """An upstream call for ``model`` failed with ``reason`` (after retries)."""
        self.metrics.upstream_error(model, reason)

    def cache_lookup(self, hit: bool) -> None:
        """A response cache lookup ended in a hit or a miss."""
        self.metrics.cache.labels("hit" if hit else "miss").inc()

    def close(self) -> None:
        """Flush spans still buffered for export."""
        self.tracer.shutdown()


def access_fields(
    row: UsageRow, fallbacks: int, key_name: str | None = None
) -> dict[str, Any]:
    """The structured fields of one access-log line (``extra`` of the record)."""
    return {
        "request_id": row.request_id,
        "key": key_name,
        "key_id": row.key,
        "route": row.route,
        "confidence": None if row.confidence is None else round(row.confidence, 4),
        "rule": row.rule,
        "model": row.model,
        "models_tried": row.models_tried,
        "fallbacks": fallbacks,
        "status": row.status,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost_usd": round(row.cost_usd, 8),
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "stream": row.stream,
        "cache": "hit" if row.cached else "miss",
    }
