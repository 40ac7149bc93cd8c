"""The interface every provider adapter meets.

The gateway speaks OpenAI's wire format to clients. A provider adapter turns an
OpenAI-shaped request body into the upstream's HTTP request, and the upstream's
answer (whole, or as server-sent events) back into OpenAI's shapes. Adapters do
no I/O: the upstream layer sends the bytes and parses SSE framing, so every
adapter is a set of pure, testable translations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mixroute.config.schema import ModelConfig

Kind = Literal["chat", "completions"]


@dataclass(frozen=True)
class UpstreamRequest:
    """One HTTP request to send upstream. ``headers`` carry the provider key."""

    url: str
    headers: Mapping[str, str]
    json: Mapping[str, Any]


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class StreamState:
    """What a stream translator has seen so far (for accounting and fallback)."""

    usage: Usage | None = None
    finish_reason: str | None = None
    content_started: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class StreamTranslator(Protocol):
    """Turns one upstream SSE stream into OpenAI ``chat.completion.chunk`` dicts."""

    state: StreamState

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        """One SSE event (``event:`` name or None, joined ``data:`` lines) in;
        zero or more OpenAI chunk dicts out. ``data == "[DONE]"`` ends an
        OpenAI stream and yields nothing. Raises ``UpstreamProtocolError`` on
        an undecodable event and ``UpstreamStatusError`` on an in-stream error
        event from the provider."""
        ...

    def finish(self) -> list[dict[str, Any]]:
        """Called once when the upstream stream ended cleanly; final chunks."""
        ...


class Provider(Protocol):
    """A protocol family (OpenAI-compatible, Anthropic Messages)."""

    name: str
    #: True when ``parse_response`` returns the upstream's answer unchanged
    #: (OpenAI-compatible upstreams): its bytes then go to the client as they
    #: came, without encoding the JSON again.
    passes_answer_through: bool

    def build_request(
        self,
        model: ModelConfig,
        kind: Kind,
        body: Mapping[str, Any],
        *,
        stream: bool,
        api_key: str | None,
    ) -> UpstreamRequest:
        """Translate an OpenAI-shaped body (its ``model`` already replaced by
        ``model.upstream_model``) into the upstream request. For streams the
        adapter asks the upstream for usage. Raises ``ClientError`` for a
        request this provider cannot express."""
        ...

    def parse_response(
        self, model: ModelConfig, kind: Kind, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], Usage | None]:
        """A whole upstream JSON answer → (OpenAI-shaped response, usage)."""
        ...

    def stream_translator(self, model: ModelConfig, kind: Kind) -> StreamTranslator:
        """A fresh translator for one streamed answer."""
        ...

    def error_message(self, status: int, data: Any) -> str:
        """A short, key-free description of an upstream error body."""
        ...
