"""Prometheus metrics on a registry of their own, one per app.

Every label value is bounded: route and model names come from the config (any
other value reads ``other``), statuses are classes (``2xx``), error reasons are
the upstream error tree's fixed names and keys are client key *names*, capped
at ``MAX_KEYS`` distinct values. No prompt text, request id or raw key can
reach a label, so the series count stays small whatever the traffic.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mixroute.state.ledger import UsageRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_KEYS = 64
OTHER = "other"
NONE = "none"
# Seconds; LLM calls span milliseconds (cache hits) to minutes (long answers).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CLASSIFY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-/]{0,63}$")
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ``5xx``; 499 (client closed) keeps its own class."""
    if status == 499:
        return "499"
    return f"{status // 100}xx" if 100 <= status < 600 else OTHER


class Metrics:
    """The gateway's instruments. ``render()`` gives the exposition text."""

    def __init__(
        self,
        routes: Iterable[str],
        models: Iterable[str],
        circuits: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes = frozenset(routes)
        self.models = frozenset(models)
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        r = self.registry
        self.requests = Counter(
            "mixroute_requests",
            "Requests finished, by route, answering model and status class.",
            ["route", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "mixroute_request_duration_seconds",
            "Time from arrival to the last byte, by route and model.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "mixroute_time_to_first_token_seconds",
            "Time from arrival to the first content byte of a stream, by model.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.classify = Histogram(
            "mixroute_classification_duration_seconds",
            "Time the classifier took for one prompt.",
            buckets=CLASSIFY_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "mixroute_upstream_errors",
            "Upstream calls that failed after retries, by model and reason.",
            ["model", "reason"],
            registry=r,
        )
        self.fallbacks = Counter(
            "mixroute_fallbacks",
            "Moves from a failed model to the next candidate.",
            ["from_model", "to_model"],
            registry=r,
        )
        self.cache = Counter(
            "mixroute_cache_lookups",
            "Response cache lookups by result (hit, miss).",
            ["result"],
            registry=r,
        )
        self.tokens = Counter(
            "mixroute_tokens",
            "Tokens by model, route, client key name and direction (input, output).",
            ["model", "route", "key", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "mixroute_cost_usd",
            "Spend in USD at the config prices, by model, route and key name.",
            ["model", "route", "key"],
            registry=r,
        )
        self.baseline = Counter(
            "mixroute_baseline_cost_usd",
            "What the same tokens would cost on the premium default model.",
            ["route", "key"],
            registry=r,
        )
        self.budget = Gauge(
            "mixroute_budget_remaining_usd",
            "USD left in a global or per-route budget in its current period.",
            ["budget"],
            registry=r,
        )
        self.in_flight = Gauge(
            "mixroute_in_flight_requests",
            "Completion requests being served now.",
            registry=r,
        )
        if circuits is not None:
            r.register(_CircuitCollector(circuits))
        self._cache: dict[tuple[str, str, str, str], _Children] = {}

    # labels ----------------------------------------------------------------

    def route(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self.routes else OTHER

    def model(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self.models else OTHER

    def key(self, name: str | None) -> str:
        if name is None:
            return "anonymous"
        if not _SAFE.match(name):
            return OTHER
        with self._lock:
            if name in self._keys:
                return name
            if len(self._keys) >= MAX_KEYS:
                return OTHER
            self._keys.add(name)
        return name

    @staticmethod
    def reason(value: str) -> str:
        return value if _REASON.match(value) else OTHER

    # recording -------------------------------------------------------------

    def observe(
        self,
        row: UsageRow,
        *,
        classify_ms: float | None = None,
        key_name: str | None = None,
    ) -> None:
        """Count one finished request from its ledger row; ``key_name`` labels
        it (the row's key id when no name is known)."""
        route, model = self.route(row.route), self.model(row.model)
        key = self.key(key_name if key_name is not None else row.key)
        c = self._children(route, model, status_class(row.status), key)
        c.requests.inc()
        c.latency.observe(row.latency_ms / 1000.0)
        if row.ttft_ms is not None and row.stream:
            c.ttft.observe(row.ttft_ms / 1000.0)
        if classify_ms is not None:
            self.classify.observe(classify_ms / 1000.0)
        if "," in row.models_tried:
            tried = [m for m in row.models_tried.split(",") if m]
            for a, b in itertools.pairwise(tried):
                self.fallbacks.labels(self.model(a), self.model(b)).inc()
        if row.input_tokens:
            c.tokens_in.inc(row.input_tokens)
        if row.output_tokens:
            c.tokens_out.inc(row.output_tokens)
        if row.cost_usd:
            c.cost.inc(row.cost_usd)
        if row.baseline_cost_usd:
            c.baseline.inc(row.baseline_cost_usd)

    def _children(self, route: str, model: str, status: str, key: str) -> _Children:
        # ``labels()`` costs microseconds each (a lock, tuple checks); one dict
        # lookup per request instead. Bounded like the labels themselves.
        at = (route, model, status, key)
        c = self._cache.get(at)
        if c is None:
            c = _Children(
                self.requests.labels(route, model, status),
                self.latency.labels(route, model),
                self.ttft.labels(model),
                self.tokens.labels(model, route, key, "input"),
                self.tokens.labels(model, route, key, "output"),
                self.cost.labels(model, route, key),
                self.baseline.labels(route, key),
            )
            self._cache[at] = c
        return c

    def upstream_error(self, model: str, reason: str) -> None:
        self.upstream_errors.labels(self.model(model), self.reason(reason)).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        data: bytes = generate_latest(self.registry)
        return data


@dataclass(frozen=True, slots=True)
class _Children:
    """The labelled series one request of a (route, model, status, key) bumps."""

    requests: Any
    latency: Any
    ttft: Any
    tokens_in: Any
    tokens_out: Any
    cost: Any
    baseline: Any


class _CircuitCollector(Collector):
    """Reads the breakers at scrape time: nothing to update on the hot path."""

    def __init__(self, read: Callable[[], Mapping[str, str]]) -> None:
        # Keys are the pool's breakers: the config's model names, bounded.
        self.read = read

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "mixroute_circuit_state",
            "Circuit breaker per model: 0 closed, 1 half open, 2 open.",
            labels=["model"],
        )
        for model, state in self.read().items():
            g.add_metric([model], CIRCUIT_STATES.get(state, 0.0))
        yield g

    def describe(self) -> Iterator[Metric]:
        return iter(())
