"""Prometheus metrics on a registry of their own, one per app.

Every label value is bounded: route and model names come from the config (any
other value reads ``other``), statuses are classes (``2xx``), error reasons are
the upstream error tree's fixed names and keys are client key *names*, capped
at ``MAX_KEYS`` distinct values. No prompt text, request id or raw key can
reach a label, so the series count stays small whatever the traffic.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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
        # Counted in a plain int by the event loop (a locked gauge update
        # twice per request cost more), read when /metrics is scraped.
        self.in_flight_count = 0
        self.in_flight.set_function(lambda: self.in_flight_count)
        if circuits is not None:
            r.register(_CircuitCollector(circuits))
        # Finished requests are counted in plain numbers, one record per
        # (route, model, status class, key), and turned into the request,
        # latency, token and cost families only when /metrics is read: the
        # client library's locked, labelled instruments cost more per request
        # than the rest of the accounting.
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        # Classification times likewise: bucket counts, then their sum.
        self._classify = _Counts([0] * (len(CLASSIFY_BUCKETS) + 1))
        r.register(_RequestCollector(self._series, self._classify))

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
        at = (
            self.route(row.route),
            self.model(row.model),
            status_class(row.status),
            self.key(key_name if key_name is not None else row.key),
        )
        c = self._series.get(at)
        if c is None:
            c = self._series[at] = _Series()
        c.requests += 1
        seconds = row.latency_ms / 1000.0
        c.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        c.latency_sum += seconds
        if row.ttft_ms is not None and row.stream:
            seconds = row.ttft_ms / 1000.0
            c.ttft[bisect_left(TTFT_BUCKETS, seconds)] += 1
            c.ttft_sum += seconds
        c.tokens_in += row.input_tokens
        c.tokens_out += row.output_tokens
        c.cost += row.cost_usd
        c.baseline += row.baseline_cost_usd
        if classify_ms is not None:
            seconds = classify_ms / 1000.0
            self._classify.counts[bisect_left(CLASSIFY_BUCKETS, seconds)] += 1
            self._classify.total += seconds
        if "," in row.models_tried:
            tried = [m for m in row.models_tried.split(",") if m]
            for a, b in itertools.pairwise(tried):
                self.fallbacks.labels(self.model(a), self.model(b)).inc()

    def upstream_error(self, model: str, reason: str) -> None:
        self.upstream_errors.labels(self.model(model), self.reason(reason)).inc()

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        data: bytes = generate_latest(self.registry)
        return data


@dataclass(slots=True)
class _Series:
    """What the finished requests of one (route, model, status, key) added up
    to. Histogram counts are per bucket (not cumulative), the last one past
    the largest bound."""

    requests: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    ttft: list[int] = field(default_factory=lambda: [0] * (len(TTFT_BUCKETS) + 1))
    ttft_sum: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    baseline: float = 0.0


@dataclass(slots=True)
class _Counts:
    """One unlabelled histogram: counts per bucket (the last one past the
    largest bound, not cumulative) and the sum of the values."""

    counts: list[int]
    total: float = 0.0


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` pairs in the exposition format."""
    out = []
    for bound, n in zip((*bounds, math.inf), itertools.accumulate(counts), strict=True):
        out.append(("+Inf" if bound == math.inf else repr(float(bound)), float(n)))
    return out


class _RequestCollector(Collector):
    """The request, latency, time-to-first-token, token and cost families,
    summed from the per-request records at scrape time."""

    def __init__(
        self,
        series: dict[tuple[str, str, str, str], _Series],
        classify: _Counts,
    ) -> None:
        self.series = series
        self.classify = classify

    def collect(self) -> Iterator[Metric]:
        # A snapshot: the event loop may add records while this runs.
        items = list(self.series.items())
        requests: dict[tuple[str, ...], float] = defaultdict(float)
        tokens: dict[tuple[str, ...], float] = defaultdict(float)
        cost: dict[tuple[str, ...], float] = defaultdict(float)
        baseline: dict[tuple[str, ...], float] = defaultdict(float)
        latency: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        ttft: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        for (route, model, status, key), c in items:
            requests[(route, model, status)] += c.requests
            tokens[(model, route, key, "input")] += c.tokens_in
            tokens[(model, route, key, "output")] += c.tokens_out
            cost[(model, route, key)] += c.cost
            baseline[(route, key)] += c.baseline
            _add(latency, (route, model), c.latency, c.latency_sum)
            if any(c.ttft):
                _add(ttft, (model,), c.ttft, c.ttft_sum)
        yield _histogram(
            "mixroute_classification_duration_seconds",
            "Time the classifier took for one prompt.",
            [],
            CLASSIFY_BUCKETS,
            {(): (list(self.classify.counts), [self.classify.total])},
        )
        yield _counter(
            "mixroute_requests",
            "Requests finished, by route, answering model and status class.",
            ["route", "model", "status"],
            requests,
        )
        yield _histogram(
            "mixroute_request_duration_seconds",
            "Time from arrival to the last byte, by route and model.",
            ["route", "model"],
            LATENCY_BUCKETS,
            latency,
        )
        yield _histogram(
            "mixroute_time_to_first_token_seconds",
            "Time from arrival to the first content byte of a stream, by model.",
            ["model"],
            TTFT_BUCKETS,
            ttft,
        )
        yield _counter(
            "mixroute_tokens",
            "Tokens by model, route, client key name and direction (input, output).",
            ["model", "route", "key", "direction"],
            {k: v for k, v in tokens.items() if v},
        )
        yield _counter(
            "mixroute_cost_usd",
            "Spend in USD at the config prices, by model, route and key name.",
            ["model", "route", "key"],
            {k: v for k, v in cost.items() if v},
        )
        yield _counter(
            "mixroute_baseline_cost_usd",
            "What the same tokens would cost on the premium default model.",
            ["route", "key"],
            {k: v for k, v in baseline.items() if v},
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _add(
    into: dict[tuple[str, ...], tuple[list[int], list[float]]],
    labels: tuple[str, ...],
    counts: list[int],
    total: float,
) -> None:
    have = into.get(labels)
    if have is None:
        into[labels] = (list(counts), [total])
        return
    for i, n in enumerate(counts):
        have[0][i] += n
    have[1][0] += total


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, v in values.items():
        family.add_metric(list(key), v)
    return family


def _histogram(
    name: str,
    doc: str,
    labels: list[str],
    bounds: tuple[float, ...],
    values: Mapping[tuple[str, ...], tuple[list[int], list[float]]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, (counts, total) in values.items():
        family.add_metric(list(key), _buckets(bounds, counts), total[0])
    return family


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
