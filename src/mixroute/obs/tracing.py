"""Optional OpenTelemetry spans: request, classify, policy, cache, each upstream.

Off by default. Then ``build_tracer`` returns ``NoopTracer``, whose ``span`` hands
back one shared null context: nothing is allocated per request and
``opentelemetry`` is never imported. With ``observability.tracing.otlp_endpoint``
set (and the ``[otel]`` extra installed) spans go to that collector over
OTLP/HTTP in batches, off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

from mixroute.config.schema import TracingConfig
from mixroute.errors import ConfigError

log = logging.getLogger("mixroute.obs")
Attrs = Mapping[str, str | int | float | bool]
Span = AbstractContextManager[Any]
_NULL: Span = nullcontext()


class Tracer(Protocol):
    """What the gateway asks of a tracer."""

    enabled: bool

    def span(self, name: str, attrs: Attrs | None = None) -> Span: ...

    def shutdown(self) -> None: ...


class NoopTracer:
    """Tracing off: every span is the same null context."""

    enabled = False

    def span(self, name: str, attrs: Attrs | None = None) -> Span:
        return _NULL

    def shutdown(self) -> None:
        return None


class OtelTracer:
    """Spans through an OpenTelemetry ``TracerProvider`` of our own (not the
    global one, so several apps in one process keep their spans apart)."""

    enabled = True

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("mixroute")

    @contextmanager
    def _span(self, name: str, attrs: Attrs | None) -> Iterator[Any]:
        with self._tracer.start_as_current_span(name, attributes=attrs) as span:
            yield span

    def span(self, name: str, attrs: Attrs | None = None) -> Span:
        return self._span(name, attrs)

    def shutdown(self) -> None:
        self.provider.shutdown()


def build_tracer(config: TracingConfig, *, processor: Any = None) -> Tracer:
    """The tracer for ``config``: no-op unless an endpoint (or, in tests, a span
    ``processor``) is given. Raises ``ConfigError`` when tracing is asked for
    but the ``[otel]`` extra is not installed."""
    if config.otlp_endpoint is None and processor is None:
        return NoopTracer()
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
    except ImportError:
        raise ConfigError(
            [
                "observability.tracing.otlp_endpoint is set but OpenTelemetry is "
                "not installed; install mixroute[otel] or remove the endpoint."
            ]
        ) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=TraceIdRatioBased(config.sample_ratio),
    )
    if processor is None:
        processor = _otlp_processor(config)
    provider.add_span_processor(processor)
    log.info("tracing: spans exported with OTLP to %s", config.otlp_endpoint)
    return OtelTracer(provider)


def _otlp_processor(config: TracingConfig) -> Any:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise ConfigError(
            [
                "observability.tracing.otlp_endpoint is set but the OTLP exporter "
                "is not installed; install mixroute[otel]."
            ]
        ) from None
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint))
