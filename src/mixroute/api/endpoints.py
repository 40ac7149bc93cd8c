"""The ASGI endpoints. Chat and completions are raw ASGI apps for control over
reading the body (413 while reading), noticing a hang-up while the upstream
works, and holding back the status line of a stream."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from typing import Any

from mixroute.errors import ClientError, UpstreamError
from mixroute.policy.wiring import SESSION_HEADER, policy_request
from mixroute.providers.base import Kind
from mixroute.upstream.pool import dumps

from .caching import CacheStep
from .context import CLIENT_CLOSED, SERVER_STOPPED, RequestContext, new_request_id
from .gateway import AllCandidatesFailed, Gateway
from .streaming import stream
from .wire import (
    BODY_SCOPE_KEY,
    ChatRequest,
    ClassifyRequest,
    ClientGone,
    CompletionRequest,
    Receive,
    Scope,
    Send,
    error_body,
    header,
    parse_json,
    read_body,
    send_json,
    validate,
)

log = logging.getLogger("mixroute")
# Client headers that may travel upstream. Everything else (Authorization,
# Cookie, api keys, proxies' headers) stays here.
FORWARDED_HEADERS = (b"openai-beta",)
# Bodies up to this size are tokenized on the event loop (tens of microseconds).
INLINE_TOKENIZE_BYTES = 4096
# Seconds after the body was read before a hang-up is watched for (``_HangUp``).
WATCH_AFTER_S = 0.1


class CompletionEndpoint:
    """``POST /v1/chat/completions`` and ``POST /v1/completions``."""

    def __init__(self, gateway: Gateway, kind: Kind) -> None:
        self.gateway = gateway
        self.kind: Kind = kind
        self.schema = ChatRequest if kind == "chat" else CompletionRequest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext(
            new_request_id(header(scope, b"x-request-id")), kind=self.kind
        )
        # The client key's id, set by the guards (issue 6); None when auth is off.
        ctx.key = scope.get("state", {}).get("client_key_id")
        ctx.key_name = scope.get("state", {}).get("client_key_name")
        task = asyncio.current_task()
        assert task is not None
        watcher: _HangUp | None = None
        gone = False
        try:
            read = scope.get(BODY_SCOPE_KEY)
            if read is not None:
                body, data = read
            else:
                limit = self.gateway.config.server.max_body_bytes
                body, data = await read_body(scope, receive, limit), None
            watcher = _HangUp(receive, task, ctx)
            attrs = {"mixroute.request_id": ctx.request_id, "mixroute.kind": self.kind}
            with self.gateway.obs.span("mixroute.request", attrs):
                await self._serve(ctx, scope, body, data, send)
        except ClientGone:
            gone = True
        except asyncio.CancelledError:
            if watcher is None or not watcher.fired or ctx.finished:
                if not ctx.finished:
                    # Cancelled from outside (the shutdown deadline passed):
                    # the answer was cut, and its ledger row says so.
                    ctx.status, ctx.error = 503, SERVER_STOPPED
                raise
            # Our watcher cancelled us: the client hung up.
            task.uncancel()
            gone = True
        except ClientError as exc:
            await self._fail(
                ctx, send, exc.status, exc.body(), exc.headers, exc.message
            )
        except UpstreamError as exc:
            log.error("request %s failed: %s", ctx.request_id, exc.message)
            payload = error_body(exc.message, "server_error", "upstream_unavailable")
            wait = exc.retry_after if isinstance(exc, AllCandidatesFailed) else None
            extra = None if wait is None else {"retry-after": str(math.ceil(wait))}
            await self._fail(ctx, send, 503, payload, extra, exc.message)
        except Exception:
            log.exception("request %s failed unexpectedly", ctx.request_id)
            payload = error_body("The server had an internal error.", "server_error")
            await self._fail(ctx, send, 500, payload, None, "internal error")
        finally:
            if watcher is not None:
                watcher.cancel()
            if gone:
                ctx.status = CLIENT_CLOSED
                ctx.error = ctx.error or "client disconnected"
            self.gateway.account(ctx)

    async def _serve(
        self,
        ctx: RequestContext,
        scope: Scope,
        body: bytes,
        parsed: dict[str, Any] | None,
        send: Send,
    ) -> None:
        gw = self.gateway
        ctx.body_size = len(body)
        data = parsed if parsed is not None else parse_json(body)
        model = data.get("model")
        messages = data.get("messages")
        pending = None
        short = len(body) <= INLINE_TOKENIZE_BYTES
        if model == "auto" and self.kind == "chat" and isinstance(messages, list):
            pending = gw.start_classification(messages, short=short)
        elif model == "auto" and isinstance(data.get("prompt"), str):
            prompt = [{"role": "user", "content": data["prompt"]}]
            pending = gw.start_classification(prompt, short=short)
        try:
            req = validate(self.schema, data)
        except ClientError:
            if pending is not None:
                pending.cancel()
            raise
        ctx.stream = bool(req.stream)
        step = CacheStep.begin(gw, ctx, data) if self.kind == "chat" else None
        if self.kind == "chat":
            ctx.messages = messages
        else:
            ctx.prompt_text = _prompt_text(data.get("prompt"))

        preq = None
        if gw.engine is not None:
            build = functools.partial(
                policy_request,
                data,
                request_id=ctx.request_id,
                key_id=ctx.key,
                headers={SESSION_HEADER: header(scope, b"x-session-id") or ""},
            )
            # It reads and hashes the messages: a long prompt goes to the thread
            # pool, while a short one costs less than the hop there and back.
            preq = build() if short else await gw.off_loop(build)
        if pending is not None and gw.obs.tracer.enabled:
            with gw.obs.span("mixroute.classify"):
                await asyncio.wait([pending])
        with gw.obs.span("mixroute.policy"):
            ctx.decision = await gw.decide(req.model, pending, request=preq)
        t = ctx.decision.trace
        if t is not None and t.request.prompt_tokens_exact:
            # Only an exact count (the engine counts when budgets or a context
            # window need it); else ``plan`` counts if it has to.
            ctx.prompt_tokens = t.request.prompt_tokens or None
        max_out = getattr(req, "max_completion_tokens", None) or req.max_tokens
        ctx.candidates = await gw.plan(ctx, len(body), max_out)
        headers = _forwarded(scope, ctx)
        opts = req.stream_options
        include_usage = bool(opts and opts.include_usage)
        if step is not None:
            with gw.obs.span("mixroute.cache"):
                hit = await step.lookup()
            if hit is not None:
                await step.serve(hit, send, include_usage)
                return

        if ctx.stream:
            await stream(gw, ctx, self.kind, data, headers, send, include_usage)
            if step is not None:
                await step.store()
            return
        answer = await gw.complete(ctx, self.kind, data, headers)
        ctx.finished = True
        payload = ctx.answer_bytes or dumps(answer)
        await send_json(send, 200, payload, ctx.response_headers())
        if step is not None:
            await step.store(answer)

    async def _fail(
        self,
        ctx: RequestContext,
        send: Send,
        status: int,
        body: Any,
        headers: dict[str, str] | None,
        message: str,
    ) -> None:
        ctx.status = status
        ctx.error = message[:300]
        if ctx.response_started:
            return
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        ctx.finished = True
        await send_json(send, status, payload, ctx.response_headers() + extra)


class _HangUp:
    """Cancels the request's task when the client disconnects before the answer
    is done. Watching starts ``WATCH_AFTER_S`` after the body was read: most
    answers are done by then, and a timer costs the event loop much less than
    a task per request. A hang-up still cancels the upstream call within that
    delay of the later start."""

    def __init__(
        self, receive: Receive, task: asyncio.Task[Any], ctx: RequestContext
    ) -> None:
        self.watch: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(WATCH_AFTER_S, self._start, receive, task, ctx)

    def _start(
        self, receive: Receive, task: asyncio.Task[Any], ctx: RequestContext
    ) -> None:
        self.watch = asyncio.ensure_future(_watch(receive, task, ctx))

    @property
    def fired(self) -> bool:
        """The client hung up and the request's task was cancelled for it."""
        return self.watch is not None and self.watch.done()

    def cancel(self) -> None:
        self.timer.cancel()
        if self.watch is not None:
            self.watch.cancel()


async def _watch(
    receive: Receive, task: asyncio.Task[Any], ctx: RequestContext
) -> None:
    """Cancel ``task`` when the client disconnects before the answer is done."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not ctx.finished:
                task.cancel()
            return


def _forwarded(scope: Scope, ctx: RequestContext) -> dict[str, str]:
    headers = {"x-request-id": ctx.request_id}
    for key, value in scope["headers"]:
        if key in FORWARDED_HEADERS:
            headers[key.decode("latin-1")] = value.decode("latin-1")
    return headers


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(p for p in prompt if isinstance(p, str))
    return ""


class ClassifyEndpoint:
    """``POST /v1/classify``: the decision for a prompt, without calling a model."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = new_request_id(header(scope, b"x-request-id"))
        try:
            body = await read_body(
                scope, receive, self.gateway.config.server.max_body_bytes
            )
            req = validate(ClassifyRequest, parse_json(body))
            if req.messages:
                messages: list[Any] = [m.model_dump() for m in req.messages]
            elif req.prompt:
                messages = [{"role": "user", "content": req.prompt}]
            else:
                raise ClientError(
                    "Send a 'prompt' string or a non-empty 'messages' list.",
                    code="missing_required_parameter",
                    param="prompt",
                )
            started = time.perf_counter()
            c = await self.gateway.start_classification(messages)
            model = req.model or "auto"
            if model == "auto":
                d = self.gateway.policy.decide(c)
            else:
                d = await self.gateway.decide(model, None)
            out = {
                "model": d.model,
                "candidates": list(d.candidates),
                "route": d.route or c.route,
                "rule": d.rule,
                "confidence": round(c.confidence, 4),
                "tier": c.tier,
                "hard_probability": round(c.hard_probability, 4),
                "scores": {k: round(v, 4) for k, v in c.scores.items()},
                "backend": c.backend,
                "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            headers = [(b"x-request-id", rid.encode())]
            await send_json(send, 200, dumps(out), headers)
        except ClientGone:
            return
        except ClientError as exc:
            await send_json(send, exc.status, json.dumps(exc.body()).encode())
        except Exception:
            log.exception("classify request %s failed unexpectedly", rid)
            body_ = error_body("The server had an internal error.", "server_error")
            await send_json(send, 500, body_)
