"""The request context: what one request carries from arrival to the ledger."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from mixroute.classify.base import Classification
from mixroute.config.schema import MixrouteConfig, ModelConfig
from mixroute.policy.decision import RoutingDecision
from mixroute.providers.base import Kind, Usage
from mixroute.state.ledger import UsageRow

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Status recorded for a request whose client hung up (nginx's convention).
CLIENT_CLOSED = 499
# The error of a request cut because the server stopped (shutdown deadline).
SERVER_STOPPED = "cancelled: the server stopped"


def new_request_id(client_value: str | None = None) -> str:
    """The client's ``x-request-id`` if it is a safe token, else a fresh one."""
    if client_value and _REQUEST_ID.match(client_value):
        return client_value
    # Not a secret, so the fast generator does (os.urandom is a system call).
    return f"req_{random.getrandbits(96):024x}"


@dataclass
class RequestContext:
    """Mutable state of one request; turned into exactly one ledger row."""

    request_id: str
    kind: Kind | None = None
    key: str | None = None
    # The client key's name, for metrics and logs (the ledger keeps the id).
    key_name: str | None = None
    stream: bool = False
    ts: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    decision: RoutingDecision | None = None
    classification: Classification | None = None
    candidates: list[ModelConfig] = field(default_factory=list)
    models_tried: list[str] = field(default_factory=list)
    model: str | None = None
    status: int = 200
    usage: Usage | None = None
    prompt_tokens: int | None = None
    output_chars: int = 0
    ttft_ms: float | None = None
    error: str | None = None
    finished: bool = False
    response_started: bool = False
    messages: list[Any] | None = None
    prompt_text: str | None = None
    body_size: int = 0
    context_trimmed: bool = False
    # Candidates ahead of the first usable one that have no endpoint configured.
    skipped_unconfigured: list[str] = field(default_factory=list)
    # Answered from the response cache (no upstream call, no cost).
    cache_hit: bool = False
    # The upstream's bytes of a whole answer that goes to the client unchanged.
    answer_bytes: bytes | None = None
    # Chunks a stream sent, kept when the answer may be stored in the cache.
    stream_chunks: list[dict[str, Any]] | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0

    def mark_first_token(self) -> None:
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()

    @property
    def rule(self) -> str | None:
        """The decision's rule, plus any step the gateway took after it."""
        if self.decision is None:
            return None
        if self.skipped_unconfigured:
            names = ",".join(self.skipped_unconfigured)
            return f"{self.decision.rule}>skip:unconfigured={names}"
        return self.decision.rule

    @property
    def fallbacks(self) -> int:
        """How many models were tried before (or instead of) the answering one."""
        return max(0, len(self.models_tried) - 1)

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        """The ``x-mixroute-*`` and ``x-request-id`` headers for this request."""
        headers = [(b"x-request-id", self.request_id.encode())]
        d = self.decision
        # No model answered once candidates were tried: name none (not the plan).
        planned = d.model if d and not self.models_tried else None
        model = self.model or planned
        if model:
            headers.append((b"x-mixroute-model", model.encode()))
        if d is not None:
            if d.route:
                headers.append((b"x-mixroute-route", d.route.encode()))
            if d.confidence is not None:
                headers.append(
                    (b"x-mixroute-confidence", f"{d.confidence:.4f}".encode())
                )
            headers.append((b"x-mixroute-fallbacks", str(self.fallbacks).encode()))
            hit = b"hit" if self.cache_hit else b"miss"
            headers.append((b"x-mixroute-cache", hit))
            headers.append((b"x-mixroute-rule", (self.rule or d.rule).encode()))
            if self.context_trimmed:
                headers.append((b"x-mixroute-context", b"trimmed"))
        return headers

    def to_row(self, config: MixrouteConfig) -> UsageRow:
        """The ledger row, with cost from the config prices."""
        usage = self.usage or Usage()
        cost = baseline = 0.0
        if self.model is not None:
            cost = price(config.model(self.model), usage)
        if usage.total_tokens:
            baseline = price(config.model(config.policies.default_model), usage)
        d = self.decision
        return UsageRow(
            request_id=self.request_id,
            ts=self.ts,
            key=self.key,
            route=d.route if d else None,
            confidence=d.confidence if d else None,
            rule=self.rule,
            model=self.model,
            models_tried=",".join(self.models_tried),
            status=self.status,
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            cost_usd=cost,
            baseline_cost_usd=baseline,
            latency_ms=round(self.elapsed_ms(), 3),
            ttft_ms=None if self.ttft_ms is None else round(self.ttft_ms, 3),
            stream=self.stream,
            error=self.error,
            cached=self.cache_hit,
        )


def price(model: ModelConfig, usage: Usage) -> float:
    """USD for ``usage`` at ``model``'s per-million-token prices."""
    return (
        usage.prompt_tokens * model.price.input_per_mtok
        + usage.completion_tokens * model.price.output_per_mtok
    ) / 1_000_000
