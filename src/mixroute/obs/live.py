"""Live numbers for the dashboard, kept in memory since the process started.

Running totals (count, errors, fallbacks, cost, the all-premium baseline) are
exact; rates and latency percentiles come from a bounded window of the latest
requests, so memory stays flat however long the gateway runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from mixroute.state.ledger import UsageRow

WINDOW_S = 60.0
MAX_WINDOW = 5000
RECENT = 25


@dataclass
class _Totals:
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    baseline_cost_usd: float = 0.0
    routes: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    model_cost: dict[str, float] = field(default_factory=dict)


class LiveStats:
    """Thread-safe totals and a sliding window of finished requests."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self.started = time.time()
        self._lock = threading.Lock()
        self._totals = _Totals()
        # (monotonic finish time, latency ms, error?, fell back?)
        self._window: deque[tuple[float, float, bool, bool]] = deque(maxlen=MAX_WINDOW)
        self._recent: deque[UsageRow] = deque(maxlen=RECENT)

    def add(self, row: UsageRow) -> None:
        """Count one finished request (its ledger row)."""
        error = row.status >= 400
        fell_back = "," in row.models_tried
        route, model = row.route or "-", row.model or "-"
        with self._lock:
            t = self._totals
            t.requests += 1
            t.errors += error
            t.fallbacks += fell_back
            t.cache_hits += row.cached
            t.input_tokens += row.input_tokens
            t.output_tokens += row.output_tokens
            t.cost_usd += row.cost_usd
            t.baseline_cost_usd += row.baseline_cost_usd
            t.routes[route] += 1
            t.models[model] += 1
            t.model_cost[model] = t.model_cost.get(model, 0.0) + row.cost_usd
            self._window.append((time.monotonic(), row.latency_ms, error, fell_back))
            # The row itself (frozen); its dashboard form is built when read.
            self._recent.appendleft(row)

    def snapshot(self) -> dict[str, Any]:
        """Totals, the last ``window_s`` seconds, splits and recent decisions."""
        now = time.monotonic()
        with self._lock:
            t = self._totals
            window = [w for w in self._window if now - w[0] <= self.window_s]
            totals = {
                "requests": t.requests,
                "errors": t.errors,
                "fallbacks": t.fallbacks,
                "cache_hits": t.cache_hits,
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cost_usd": t.cost_usd,
                "baseline_cost_usd": t.baseline_cost_usd,
                "saving_usd": t.baseline_cost_usd - t.cost_usd,
                "saving_share": (
                    1.0 - t.cost_usd / t.baseline_cost_usd
                    if t.baseline_cost_usd > 0
                    else 0.0
                ),
            }
            routes = dict(t.routes.most_common())
            models = {
                m: {"requests": n, "cost_usd": t.model_cost[m]}
                for m, n in t.models.most_common()
            }
            recent = [_recent(row) for row in self._recent]
        n = len(window)
        span = min(self.window_s, max(time.time() - self.started, 1e-3))
        latencies = sorted(w[1] for w in window)
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "totals": totals,
            "window": {
                "seconds": self.window_s,
                "requests": n,
                "rate_rps": n / span,
                "p50_ms": _quantile(latencies, 0.50),
                "p95_ms": _quantile(latencies, 0.95),
                "error_rate": sum(w[2] for w in window) / n if n else 0.0,
                "fallback_rate": sum(w[3] for w in window) / n if n else 0.0,
            },
            "by_route": routes,
            "by_model": models,
            "recent": recent,
        }


def _quantile(values: list[float], q: float) -> float | None:
    """Nearest-rank quantile of sorted ``values``; None when empty."""
    if not values:
        return None
    rank = max(1, math.ceil(q * len(values)))
    return round(values[rank - 1], 1)


def _recent(row: UsageRow) -> dict[str, Any]:
    """One line of the dashboard's recent decisions."""
    return {
        "ts": row.ts,
        "request_id": row.request_id,
        "route": row.route,
        "model": row.model,
        "rule": row.rule,
        "confidence": row.confidence,
        "models_tried": row.models_tried,
        "status": row.status,
        "latency_ms": round(row.latency_ms, 1),
        "cost_usd": row.cost_usd,
        "cached": row.cached,
    }
