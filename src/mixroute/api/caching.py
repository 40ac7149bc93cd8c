"""The response cache on the chat path: look up after the decision, store after
a whole answer.

``CacheStep.begin`` is called as soon as the body is parsed. ``lookup`` tries
the exact key first, with no vector: an exact hit costs a dictionary look-up.
Only after an exact miss, and when the last message is plain user text, does it
embed that text on the gateway's thread pool (``Classifier.embed``, the
classifier's own encoder, no second model) and try similarity. (A
``Classification`` does not carry an embedding: the classifier embeds only when
its text stage is unsure, and then a shorter window.)

``lookup`` scopes the request by tenant (the client key id), the model that
would answer first, and every parameter that changes the answer
(``cache.scope``). A hit is sent as JSON or, for a streaming request, replayed
as SSE; the request then records model = the cached model, cost 0 and the
cache flag in its one ledger row. On a miss, ``store`` keeps the answer when
it arrived whole: a streamed answer only when the stream ran to its end
(``ctx.status`` still 200 and a finish reason on every choice), never a cut or
cancelled one. Answers are stored under the model that actually answered, so
a fallback's answer is only reused where that model was the choice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from mixroute.cache import (
    CachedAnswer,
    CacheScope,
    ResponseCache,
    chat_scope,
    completion_from_chunks,
    replay_sse,
)
from mixroute.providers.base import Usage
from mixroute.state.failover import FailoverStore
from mixroute.upstream.pool import dumps

from .context import RequestContext
from .gateway import Gateway
from .wire import Send, send_json

log = logging.getLogger("mixroute.cache")
# The tenant of requests without a client key (auth off): one shared scope.
ANONYMOUS = "-"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class CacheStep:
    """The cache's part in one chat request (see the module doc)."""

    def __init__(
        self,
        gateway: Gateway,
        cache: ResponseCache,
        ctx: RequestContext,
        body: Mapping[str, Any],
    ) -> None:
        self.gateway = gateway
        self.cache = cache
        self.ctx = ctx
        self.body = body
        self.tenant = ctx.key or ANONYMOUS
        self.scope: CacheScope | None = None
        self.text = ""
        self._embedding: asyncio.Future[Any] | None = None
        self._semantic = False

    @classmethod
    def begin(
        cls, gateway: Gateway, ctx: RequestContext, body: Mapping[str, Any]
    ) -> CacheStep | None:
        """The step for a chat request when the cache is on, else None."""
        cache = gateway.cache
        if cache is None or not cache.config.enabled:
            return None
        if isinstance(gateway.store, FailoverStore) and gateway.store.degraded:
            # Redis is away: a cache round trip could only wait for its
            # timeout. The store's own probe notices when Redis returns.
            return None
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return None
        step = cls(gateway, cache, ctx, body)
        # The model is not known yet; the matched text does not depend on it.
        probe, step.text = chat_scope(step.tenant, "", body)
        step._semantic = probe.semantic
        return step

    def _start_embedding(self) -> None:
        if self._semantic and self._embedding is None:
            loop = asyncio.get_running_loop()
            self._embedding = loop.run_in_executor(
                self.gateway.executor, self.gateway.classifier.embed, [self.text]
            )

    async def lookup(self) -> CachedAnswer | None:
        """The cached answer for this request's resolved model, or None."""
        ctx = self.ctx
        if not ctx.candidates or ctx.decision is None:
            return None
        model = ctx.candidates[0].name
        self.scope, self.text = chat_scope(self.tenant, model, self.body)
        route = ctx.decision.route
        # An exact hit needs no vector, so the encoder runs only after an exact
        # miss: a hit then costs a dictionary look-up, not an encoder pass.
        hit = await self.cache.lookup(self.scope, self.text, None, route=route)
        if hit is None and self._semantic:
            self._start_embedding()
            hit = await self.cache.lookup(
                self.scope, self.text, await self._vector(), route=route
            )
        self.gateway.obs.cache_lookup(hit is not None)
        if hit is None and self.cache.storable(self.scope) and ctx.stream:
            # Keep what the stream sends, to store it if it ends whole.
            ctx.stream_chunks = []
        return hit

    async def serve(self, hit: CachedAnswer, send: Send, include_usage: bool) -> None:
        """Answer from ``hit``: JSON, or SSE for a streaming request."""
        ctx = self.ctx
        assert self.scope is not None
        ctx.cache_hit = True
        ctx.model = self.scope.model
        ctx.usage = Usage(0, 0)
        ctx.mark_first_token()
        if not ctx.stream:
            ctx.finished = True
            await send_json(send, 200, dumps(hit.response), ctx.response_headers())
            return
        ctx.response_started = True
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _SSE_HEADERS + ctx.response_headers(),
            }
        )
        data = b"".join(replay_sse(hit.response, include_usage=include_usage))
        ctx.finished = True
        await send({"type": "http.response.body", "body": data})

    async def store(self, answer: Mapping[str, Any] | None = None) -> None:
        """Store the answer just sent if it is whole (``answer`` for JSON;
        the captured chunks for a stream)."""
        ctx = self.ctx
        if self.scope is None or ctx.model is None or ctx.status != 200:
            return
        if answer is None:
            if ctx.stream_chunks is None:
                return
            answer = completion_from_chunks(ctx.stream_chunks)
            ctx.stream_chunks = None
        scope = self.scope
        if ctx.model != scope.model:
            scope, _ = chat_scope(self.tenant, ctx.model, self.body)
        if not self.cache.storable(scope):
            return
        try:
            await self.cache.store(scope, self.text, await self._vector(), answer)
        except Exception:
            # The answer has gone out already; a failed store only costs a hit.
            log.warning("request %s: storing the answer failed", ctx.request_id)

    def cancel(self) -> None:
        """Drop the embedding when the request ends early."""
        if self._embedding is not None and not self._embedding.done():
            self._embedding.cancel()

    async def _vector(self) -> object | None:
        if self._embedding is None:
            return None
        try:
            vector: object = await self._embedding
        except Exception:
            # The cache must never fail a request: without a vector, exact only.
            log.warning("embedding for the response cache failed", exc_info=True)
            self._embedding = None
            return None
        return vector
