"""Streamed answers (SSE) with silent fallback before the first content byte.

Until a chunk with real content (text or a tool call) arrives, nothing is sent
to the client: not the status line, not role-only or empty chunks. A failure
in that window moves on to the next candidate. Once content has gone out, a
failure ends the stream with one ``data: {"error": ...}`` event and no
``[DONE]``; a second model's answer is never spliced in.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mixroute.errors import ClientError, UpstreamError
from mixroute.providers import get_provider
from mixroute.providers.base import Kind, StreamTranslator
from mixroute.providers.openai import OpenAIStreamTranslator
from mixroute.upstream.pool import dumps
from mixroute.upstream.sse import SSEDecoder

from .context import RequestContext
from .gateway import Attempts, Gateway
from .wire import Send, error_body

log = logging.getLogger("mixroute")
DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class _Client:
    """The client side of one stream: holds back output until it commits."""

    def __init__(self, ctx: RequestContext, send: Send, include_usage: bool) -> None:
        self.ctx = ctx
        self.send = send
        self.include_usage = include_usage
        self.committed = False
        self.held: list[bytes] = []

    def encode(self, chunk: dict[str, Any], raw: str | None = None) -> bytes | None:
        """One chunk as SSE bytes, or None when the client must not see it.

        ``raw`` is the upstream's own JSON text for an unchanged OpenAI chunk:
        passing it on saves encoding the chunk again.
        """
        if not self.include_usage and "usage" in chunk:
            if chunk.get("usage") is not None and not chunk.get("choices"):
                return None
            chunk.pop("usage")
            if raw is not None:
                # We asked upstream for usage, so every chunk carries a null one.
                stripped = raw.replace(',"usage":null', "", 1)
                raw = stripped if len(stripped) < len(raw) else None
        self.ctx.output_chars += _text_len(chunk)
        if self.ctx.stream_chunks is not None:
            self.ctx.stream_chunks.append(chunk)
        if raw is not None:
            return b"data: " + raw.encode() + b"\n\n"
        return b"data: " + dumps(chunk) + b"\n\n"

    async def emit(self, data: bytes, content: bool) -> None:
        if self.committed:
            await self._body(data)
            return
        self.held.append(data)
        if content:
            await self.commit()

    async def commit(self) -> None:
        """Send the status line and everything held back."""
        if self.committed:
            return
        self.committed = True
        self.ctx.response_started = True
        self.ctx.mark_first_token()
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _SSE_HEADERS + self.ctx.response_headers(),
            }
        )
        held, self.held = b"".join(self.held), []
        if held:
            await self._body(held)

    async def _body(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        self.ctx.finished = True
        await self.send({"type": "http.response.body", "body": data})


async def stream(
    gateway: Gateway,
    ctx: RequestContext,
    kind: Kind,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    send: Send,
    include_usage: bool,
) -> None:
    """Answer ``body`` as SSE on ``send``, falling back while that is silent."""
    client = _Client(ctx, send, include_usage)
    attempts = Attempts(gateway, ctx)
    for model in ctx.candidates:
        ctx.models_tried.append(model.name)
        provider = get_provider(model.provider)
        key = gateway.pool.api_key(model.name)
        client.held = []
        try:
            sent = await gateway.prepared_body(ctx, model, body)
            req = provider.build_request(model, kind, sent, stream=True, api_key=key)
            with gateway.obs.span("mixroute.upstream", {"model": model.name}):
                resp = await gateway.pool.open_stream(model, req, headers)
        except (ClientError, UpstreamError) as exc:
            attempts.failed(model, exc, key)
            continue

        ctx.model = model.name
        translator = provider.stream_translator(model, kind)
        clean = False
        try:
            await _relay(gateway, model, resp, translator, client)
            clean = True
        except UpstreamError as exc:
            gateway.pool.breakers[model.name].record_failure()
            ctx.usage = translator.state.usage or ctx.usage
            if client.committed:
                ctx.status = 502
                ctx.error = f"{model.name}: {exc.reason} after the first token"
                log.warning(
                    "request %s: model %s failed mid-stream (%s)",
                    ctx.request_id,
                    model.name,
                    exc.reason,
                )
                await client.end(
                    b"data: "
                    + error_body(
                        f"The model {model.name} stopped answering mid-stream.",
                        type="upstream_error",
                        code="upstream_stream_error",
                    )
                    + b"\n\n"
                )
                return
            ctx.model = None
            ctx.output_chars = 0
            attempts.failed(model, exc, key, mid_stream=True)
            continue
        finally:
            ctx.usage = translator.state.usage or ctx.usage
            if clean:
                resp.release()
            else:
                resp.close()

        await client.commit()
        await client.end(DONE)
        return
    raise attempts.exhausted()


async def _relay(
    gateway: Gateway,
    model: Any,
    resp: Any,
    translator: StreamTranslator,
    client: _Client,
) -> None:
    decoder = SSEDecoder()
    state = translator.state
    # OpenAI chunks pass through as sent when we leave them unchanged.
    raw_ok = isinstance(translator, OpenAIStreamTranslator)
    out: list[bytes] = []
    try:
        # Everything one network read completed goes to the client in one send.
        async for piece in gateway.pool.iter_body(model, resp):
            _convert(client, translator, decoder.feed(piece), raw_ok, out)
            if out:
                await client.emit(b"".join(out), state.content_started)
                out.clear()
        _convert(client, translator, decoder.flush(), raw_ok, out)
        for chunk in translator.finish():
            data = client.encode(chunk)
            if data is not None:
                out.append(data)
    except UpstreamError:
        # Output converted before a failure was received: it is handed on.
        if out:
            await client.emit(b"".join(out), state.content_started)
        raise
    if not state.extra.get("done") and state.finish_reason is None:
        raise UpstreamError(
            f"The stream of {model.name} ended before it was complete.",
            model=model.name,
        )


def _convert(
    client: _Client,
    translator: StreamTranslator,
    events: list[tuple[str | None, str]],
    raw_ok: bool,
    out: list[bytes],
) -> None:
    for event, data in events:
        chunks = translator.feed(event, data)
        raw = data if raw_ok and len(chunks) == 1 else None
        for chunk in chunks:
            encoded = client.encode(chunk, raw)
            if encoded is not None:
                out.append(encoded)


def _text_len(chunk: Mapping[str, Any]) -> int:
    # Once per streamed chunk: ``dict`` checks (decoded JSON), not the ABC.
    n = 0
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return 0
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(text, str):
            n += len(text)
    return n
