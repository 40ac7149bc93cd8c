"""``GuardMiddleware``: the guards in front of the gateway's ASGI app.

For ``POST /v1/chat/completions`` and ``/v1/completions`` it authenticates
the client key, checks request limits and rate limits, scans the prompt for
PII and jailbreaks, and applies the route's policies before the gateway sees
the request: a redacted body replaces the original, ``route_local`` pins the
request to a ``local: true`` model, and ``x-mixroute-guard`` reports flags.
With ``restore_pii`` the answer's placeholders are put back, in whole answers
and in streams. A request it refuses is answered in OpenAI's error shape and
still gets its one ledger row. Other paths pass through, except that every
``/v1/*`` path needs a valid key when auth is on.

The route of an ``auto`` request is known only after classification, so when
routes have their own guard policies the middleware asks the gateway's
classifier (off the event loop) which route applies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mixroute.api.wire import (
    BODY_SCOPE_KEY,
    ClientGone,
    header,
    parse_json,
    read_body,
)
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ClientError
from mixroute.guards.pii import StreamRestorer
from mixroute.guards.pipeline import GuardOutcome, Guards
from mixroute.guards.redaction import (
    RedactionFilter,
    install_redaction,
    uninstall_redaction,
)
from mixroute.state.keys import ClientKey
from mixroute.state.ledger import UsageRow

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

GUARDED_PATHS = ("/v1/chat/completions", "/v1/completions")
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json")


class GuardMiddleware:
    """Wraps the gateway app; ``gateway`` gives the classifier, ledger and prices."""

    def __init__(self, app: ASGIApp, guards: Guards, gateway: Any = None) -> None:
        self.app = app
        self.guards = guards
        self.gateway = gateway
        config = guards.config
        self.max_body = config.limits.max_body_bytes or config.server.max_body_bytes
        self.route_names = set(config.route_names)
        self.redact_logs = config.guards.redact_logs
        self.redactor: RedactionFilter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in GUARDED_PATHS and scope.get("method") == "POST":
            await self._guarded(scope, receive, send)
            return
        # CORS preflights carry no credentials by design.
        needs_key = scope.get("method") != "OPTIONS" and path.startswith("/v1/")
        if needs_key and self.guards.authenticator is not None:
            try:
                await self.guards.authenticate(header(scope, b"authorization"))
            except ClientError as exc:
                await _refuse(send, exc, None)
                return
        await self.app(scope, receive, send)

    def _lifespan(self, receive: Receive) -> Receive:
        """Mask secrets in logs while the app runs (from start-up to shutdown)."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup" and self.redact_logs:
                self.redactor = install_redaction(self.guards.config)
            elif message["type"] == "lifespan.shutdown" and self.redactor:
                uninstall_redaction(self.redactor)
                self.redactor = None
            return message

        return wrapped

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.time()
        request_id = header(scope, b"x-request-id")
        key: ClientKey | None = None
        try:
            key = await self.guards.authenticate(header(scope, b"authorization"))
            raw = await read_body(scope, receive, self.max_body)
            try:
                # The gateway's own parser: strict UTF-8, no deep nesting, no
                # lone surrogates, an object. What it accepts is handed on.
                body: dict[str, Any] | None = parse_json(raw)
            except ClientError:
                body = None
            if body is None:
                # Not ours to judge: the gateway answers malformed JSON. It
                # still counts against the key's requests per minute.
                await self.guards.admit(key, 0)
                await self._forward(scope, receive, raw, None, send, None, key)
                return
            self.guards.check(body, len(raw))
            await self.guards.admit(key, _estimate_tokens(raw))
            outcome = await self._inspect(body, key, request_id or "-", len(raw))
        except ClientGone:
            return
        except ClientError as exc:
            await _refuse(send, exc, request_id)
            self._record_refusal(request_id, key, exc, started, scope)
            return
        if outcome.body is not body:
            raw = json.dumps(outcome.body).encode()
        await self._forward(scope, receive, raw, outcome.body, send, outcome, key)

    async def _inspect(
        self, body: dict[str, Any], key: ClientKey | None, request_id: str, size: int
    ) -> GuardOutcome:
        g = self.guards
        if key is None and not g.scan_pii and not g.scan_jailbreak:
            # Nothing to scan, and no key whose routes or models are limited:
            # every policy would leave the request as it is.
            return GuardOutcome(body)
        loop = asyncio.get_running_loop()
        executor = getattr(self.gateway, "executor", None)
        scan = None
        if size <= _INLINE_SCAN_BYTES:
            # A short body's PII and rule scan takes less time than the hop to
            # the thread pool; only the jailbreak head (the encoder) goes there.
            scan = self.guards.scan(body, head=False)
            if scan.jailbreak is not None and scan.jailbreak.pending:
                scan = None
        if scan is None:
            scan = await loop.run_in_executor(executor, self.guards.scan, body)
        suspicious = bool(scan.pii_types) or bool(
            scan.jailbreak and scan.jailbreak.attack
        )
        route = await self._route(body, key, suspicious)
        self._check_model(body, key, route)
        outcome = self.guards.enforce(scan, route, body, key=key, request_id=request_id)
        if outcome.local_only:
            model = self.guards.local_models[0].name
            if route is not None:
                candidates = [
                    self.guards.config.model(n)
                    for n in self.guards.config.route(route).candidates
                ]
                model = self.guards.local_candidates(candidates)[0].name
            outcome.body = {**outcome.body, "model": model}
        return outcome

    def _check_model(
        self, body: dict[str, Any], key: ClientKey | None, route: str | None
    ) -> None:
        """A key limited to routes may name only those routes' models."""
        model = body.get("model")
        if key is None or not key.routes or route is not None:
            return
        if not isinstance(model, str) or model not in self.guards.config.model_names:
            return
        allowed: set[str] = set()
        for name in key.routes:
            if name in self.route_names:
                r = self.guards.config.route(name)
                allowed |= set(r.candidates) | {r.safe_fallback or ""}
                for tier in r.tiers.values():
                    allowed |= set(tier)
        if model not in allowed:
            raise ClientError(
                f'The client key "{key.name}" may not use the model "{model}"; '
                f"it is limited to the routes {', '.join(key.routes)}.",
                status=403,
                code="model_not_allowed",
                type="permission_error",
                param="model",
            )

    async def _route(
        self, body: dict[str, Any], key: ClientKey | None, suspicious: bool
    ) -> str | None:
        """The route the gateway will use, when a policy or the key needs it."""
        model = body.get("model")
        if not isinstance(model, str):
            return None
        if model.startswith("auto:") and model[5:] in self.route_names:
            return model[5:]
        if model != "auto":
            return None
        restricted = key is not None and bool(key.routes)
        if not restricted and not (suspicious and self.guards.per_route):
            return None
        classifier = getattr(self.gateway, "classifier", None)
        messages = body.get("messages")
        if classifier is None:
            return None
        if not isinstance(messages, list):
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                return None
            messages = [{"role": "user", "content": prompt}]
        loop = asyncio.get_running_loop()
        executor = getattr(self.gateway, "executor", None)
        c = await loop.run_in_executor(executor, classifier.classify_messages, messages)
        route = getattr(c, "route", None)
        return route if isinstance(route, str) else None

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        raw: bytes,
        body: dict[str, Any] | None,
        send: Send,
        outcome: GuardOutcome | None,
        key: ClientKey | None,
    ) -> None:
        # The endpoint takes the body read (and parsed) here from the scope
        # instead of reading it again; ``receive`` then only tells of a hang-up.
        scope[BODY_SCOPE_KEY] = (raw, body)
        if key is not None:
            scope["state"] = {
                **scope.get("state", {}),
                "client_key_id": key.key_id,
                "client_key_name": key.name,
            }
        relay = _Relay(send, outcome, self, key)
        await self.app(scope, receive, relay.send if relay.needed else send)

    def _record_refusal(
        self,
        request_id: str | None,
        key: ClientKey | None,
        exc: ClientError,
        started: float,
        scope: Scope,
    ) -> None:
        ledger = getattr(self.gateway, "ledger", None)
        if ledger is None:
            return
        from mixroute.api.context import new_request_id

        row = UsageRow(
            request_id=new_request_id(request_id),
            ts=started,
            key=key.key_id if key else None,
            route=None,
            confidence=None,
            rule="guard",
            model=None,
            models_tried="",
            status=exc.status,
            input_tokens=0,
            output_tokens=0,
            cost_usd=0.0,
            baseline_cost_usd=0.0,
            latency_ms=round((time.time() - started) * 1000, 3),
            ttft_ms=None,
            stream=False,
            error=exc.message[:300],
        )
        ledger.record(row)
        # Refusals count in the metrics and the dashboard like any request.
        obs = getattr(self.gateway, "obs", None)
        if obs is not None:
            obs.finished(row, key_name=key.name if key else None)


# Bodies up to this size are scanned on the event loop (see ``_inspect``).
_INLINE_SCAN_BYTES = 512


def _estimate_tokens(raw: bytes) -> int:
    # A cheap estimate (about four bytes a token) for the token-per-minute
    # check: tokenizing every prompt on the event loop cost more than the rest
    # of the guards. The exact count is settled from the answer's usage.
    return len(raw) // 4


async def _refuse(send: Send, exc: ClientError, request_id: str | None) -> None:
    payload = json.dumps(exc.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    headers += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
    await send(
        {"type": "http.response.start", "status": exc.status, "headers": headers}
    )
    await send({"type": "http.response.body", "body": payload})


class _Relay:
    """Passes the gateway's response on, adding the guard header, restoring
    placeholders and settling rate limits and budgets when it ends."""

    def __init__(
        self,
        send: Send,
        outcome: GuardOutcome | None,
        middleware: GuardMiddleware,
        key: ClientKey | None,
    ) -> None:
        self._send = send
        self.outcome = outcome
        self.middleware = middleware
        self.key = key
        self.restoring = outcome is not None and outcome.redactor is not None
        self.stream = False
        self.buffer = b""
        self.start: Message | None = None
        self.model: str | None = None
        self.status = 200
        self.restorers: dict[int, StreamRestorer] = {}
        # Only keys with a token limit or a budget need the answer's size.
        limiter = middleware.guards.limiter
        self.accounting = key is not None and (
            limiter.limits(key)[1] is not None or key.budget_usd is not None
        )
        # Nothing to add, restore or count: the answer goes out untouched.
        flagged = outcome is not None and outcome.header() is not None
        self.needed = flagged or self.restoring or self.accounting

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            header = self.outcome.header() if self.outcome else None
            if header is not None:
                headers.append((header[0].encode(), header[1].encode()))
            self.status = int(message["status"])
            for k, v in headers:
                if k.lower() == b"content-type":
                    self.stream = v.startswith(b"text/event-stream")
                if k.lower() == b"x-mixroute-model":
                    self.model = v.decode("latin-1")
            message = {**message, "headers": headers}
            if self.restoring and not self.stream and self.status == 200:
                self.start = message  # the body changes length: send it later
                return
            await self._send(message)
            return
        if message["type"] != "http.response.body":
            await self._send(message)
            return
        body = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.start is not None:
            self.buffer += body
            if more:
                return
            await self._finish_whole()
            return
        if self.stream and not self.restoring and not self.accounting:
            # Nothing to change or count: the chunks go through untouched.
            await self._send(message)
            return
        if self.stream:
            body = self._stream_chunk(body, final=not more)
            if not more:
                await self._settle_from(b"")
        elif self.accounting:
            self.buffer += body
            if not more:
                await self._settle_from(self.buffer)
        same = body is message.get("body")
        await self._send(message if same else {**message, "body": body})

    async def _finish_whole(self) -> None:
        assert self.start is not None and self.outcome is not None
        body = self.buffer
        try:
            data = json.loads(body)
            for choice in data.get("choices", []):
                msg = choice.get("message") or {}
                if isinstance(msg.get("content"), str):
                    msg["content"] = self.outcome.restore(msg["content"])
                if isinstance(choice.get("text"), str):
                    choice["text"] = self.outcome.restore(choice["text"])
            body = json.dumps(data).encode()
        except (ValueError, AttributeError, TypeError):
            pass
        headers = [
            (k, str(len(body)).encode()) if k.lower() == b"content-length" else (k, v)
            for k, v in self.start.get("headers", [])
        ]
        await self._send({**self.start, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})
        await self._settle_from(self.buffer)

    def _stream_chunk(self, body: bytes, final: bool) -> bytes:
        self.buffer += body
        events = self.buffer.split(b"\n\n")
        self.buffer = b"" if final else events.pop()
        out = []
        for event in events:
            if event:
                out.append(self._stream_event(event))
        if final and self.buffer:
            out.append(self.buffer)
            self.buffer = b""
        return b"".join(e + b"\n\n" for e in out)

    def _stream_event(self, event: bytes) -> bytes:
        if not event.startswith(b"data: ") or event == b"data: [DONE]":
            return event
        try:
            data = json.loads(event[6:])
        except ValueError:
            return event
        if not isinstance(data, dict):
            return event
        usage = data.get("usage")
        if isinstance(usage, dict):
            self._pending_usage = usage
        for choice in data.get("choices") or []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            text = delta.get("content") if isinstance(delta, dict) else None
            self._stream_chars += len(text) if isinstance(text, str) else 0
        if not self.restoring:
            return event
        assert self.outcome is not None and self.outcome.redactor is not None
        for choice in data.get("choices") or []:
            index = choice.get("index", 0)
            restorer = self.restorers.setdefault(
                index, self.outcome.redactor.stream_restorer()
            )
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if text is None and isinstance(choice.get("text"), str):
                choice["text"] = restorer.feed(choice["text"])
            elif isinstance(text, str):
                delta["content"] = restorer.feed(text)
            if choice.get("finish_reason") and isinstance(delta, dict):
                rest = restorer.flush()
                if rest:
                    delta["content"] = (delta.get("content") or "") + rest
        return b"data: " + json.dumps(data).encode()

    _pending_usage: dict[str, Any] | None = None
    _stream_chars = 0

    async def _settle_from(self, body: bytes) -> None:
        usage: Any = self._pending_usage
        if usage is None:
            try:
                data = json.loads(body)
                usage = data.get("usage") if isinstance(data, dict) else None
            except ValueError:
                usage = None
        if self.key is None:
            return
        if not isinstance(usage, dict):
            if not self.stream:
                return
            # A stream without a usage chunk: estimate from the text sent.
            usage = {"completion_tokens": (self._stream_chars + 3) // 4}
        completion = int(usage.get("completion_tokens") or 0)
        prompt = int(usage.get("prompt_tokens") or 0)
        cost = 0.0
        config = self.middleware.guards.config
        if self.model in config.model_names:
            price = config.model(self.model).price
            cost = (
                prompt * price.input_per_mtok + completion * price.output_per_mtok
            ) / 1e6
        await self.middleware.guards.settle(self.key, completion, cost)


def build_guards(config: MixrouteConfig, gateway: Any) -> Guards:
    """The guards for ``gateway``'s app.

    The jailbreak head runs on the gateway classifier's encoder when that is
    the bundled ONNX MiniLM (another encoder's space would not fit the head);
    rate limits and budgets live in the gateway's state store.
    """
    classifier = getattr(gateway, "classifier", None)
    embed = None
    if getattr(classifier, "backend", None) == "onnx":
        embed = classifier.embed  # type: ignore[union-attr]
    return Guards.from_config(
        config, store=getattr(gateway, "store", None), embed=embed
    )
