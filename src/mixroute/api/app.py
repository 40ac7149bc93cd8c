"""``create_app(config)``: the Starlette app with the gateway wired in."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mixroute.cache.factory import build_response_cache
from mixroute.cache.response import ResponseCache
from mixroute.classify.base import Classifier
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ClientError
from mixroute.guards.middleware import GuardMiddleware, build_guards
from mixroute.obs import Observer
from mixroute.obs.web import obs_routes
from mixroute.policy.engine import PolicyEngine
from mixroute.policy.wiring import build_engine
from mixroute.state.base import StateStore
from mixroute.state.circuits import SharedCircuitBreaker
from mixroute.state.factory import build_state_store
from mixroute.state.ledger import Ledger
from mixroute.upstream.pool import RetryPolicy, UpstreamPool

from .endpoints import ClassifyEndpoint, CompletionEndpoint
from .gateway import Gateway
from .openapi import openapi_endpoint
from .wire import ClientGone, Receive, Scope, Send, parse_json, read_body

log = logging.getLogger("mixroute")


def build_gateway(
    config: MixrouteConfig,
    *,
    classifier: Classifier | None = None,
    retry: RetryPolicy | None = None,
    config_text: str | None = None,
    engine: PolicyEngine | None = None,
    store: StateStore | None = None,
    cache: ResponseCache | None = None,
    ledger: Ledger | None = None,
    obs: Observer | None = None,
) -> Gateway:
    """The gateway and its parts, built from ``config`` (not yet started).

    ``store``, ``cache`` and ``ledger`` are built from the config when not
    given; a config reload hands the running ones in, so state, cached answers
    and the ledger outlive it. With ``state.backend: redis`` the circuit
    breakers are shared by every replica.
    """
    if classifier is None:
        # Imported by name: the classifier package is built in parallel with this.
        import importlib

        classify = importlib.import_module("mixroute.classify")
        classifier = classify.build_classifier(config)
    if config_text is None:
        from mixroute.config import default_config_text

        config_text = default_config_text()
    if store is None:
        store = build_state_store(config.state)
    if cache is None and config.cache.enabled:
        cache = build_response_cache(config.cache, config.state, store)
    pool = UpstreamPool(config, retry)
    if config.state.backend == "redis":
        for m in config.models:
            pool.breakers[m.name] = SharedCircuitBreaker(
                m.name, m.circuit_breaker, store
            )
    if engine is None:
        breakers = pool.breakers
        engine = build_engine(
            config,
            store,
            breaker_state=lambda m: breakers[m].state if m in breakers else None,
        )
    return Gateway(
        config,
        classifier,
        pool,
        ledger or Ledger(config.server.ledger_path),
        config_text=config_text,
        engine=engine,
        store=store,
        cache=cache,
        obs=obs,
    )


def create_app(
    config: MixrouteConfig,
    *,
    classifier: Classifier | None = None,
    retry: RetryPolicy | None = None,
    config_text: str | None = None,
    gateway: Gateway | None = None,
    manage_gateway: bool = True,
) -> Starlette:
    """The ASGI app. Its lifespan starts and stops the gateway (ledger flushed),
    unless ``manage_gateway`` is False: then the caller does (``LiveApp``, whose
    gateways share one ledger and state store across reloads)."""
    gw = gateway or build_gateway(
        config, classifier=classifier, retry=retry, config_text=config_text
    )
    created = int(time.time())

    async def models(request: Request) -> Response:
        data = [
            {
                "id": m.name,
                "object": "model",
                "created": created,
                "owned_by": "mixroute",
            }
            for m in config.models
        ]
        data.insert(0, _alias("auto", created, "classify and route"))
        for r in config.routes:
            data.insert(1, _alias(f"auto:{r.name}", created, f"route {r.name}"))
        return JSONResponse({"object": "list", "data": data})

    async def feedback(request: Request) -> Response:
        # POST /v1/feedback {"request_id": ..., "rating": true | "up" | 0..1}
        try:
            # The same bounded reader and strict parser as the completion
            # endpoints: 413 past the limit, 400 for deep nesting or surrogates.
            limit = config.server.max_body_bytes
            data = parse_json(await read_body(request.scope, request.receive, limit))
        except ClientGone:
            return Response(status_code=400)
        except ClientError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        rid = data.get("request_id")
        try:
            if gw.engine is None:
                raise ClientError("Feedback needs the policy engine.", status=404)
            if not isinstance(rid, str) or not rid:
                raise ClientError(
                    "Send a JSON object with 'request_id' and 'rating'.",
                    param="request_id",
                    code="missing_required_parameter",
                )
            if not await gw.engine.rate(rid, data.get("rating")):
                raise ClientError(
                    f'No request with id "{rid[:128]}" is known to this gateway.',
                    status=404,
                    param="request_id",
                    code="request_not_found",
                )
        except ClientError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse({"object": "feedback", "request_id": rid, "ok": True})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        healthy = [m.name for m in config.models if gw.pool.healthy(m)]
        ready = gw.classifier_warm and bool(healthy)
        body = {
            "status": "ready" if ready else "not ready",
            "config": True,
            "classifier_warm": gw.classifier_warm,
            "healthy_upstreams": healthy,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_gateway:
            await gw.start()
        try:
            yield
        finally:
            if manage_gateway:
                await gw.stop()

    chat = CompletionEndpoint(gw, "chat")
    legacy = CompletionEndpoint(gw, "completions")
    routes = [
        # Served by ``MixrouteApp.completions``; listed so that other methods
        # get Starlette's 405.
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", legacy, methods=["POST"]),
        Route("/v1/classify", ClassifyEndpoint(gw), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint(), methods=["GET"]),
        *obs_routes(gw),
    ]
    # Keys, limits, PII and jailbreaks (issue 6): in front of every path, and
    # (the same guards) in front of the completion endpoints' short path.
    guards = build_guards(config, gw)
    app = MixrouteApp(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(GuardMiddleware, guards=guards, gateway=gw)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    endpoints = {"/v1/chat/completions": chat, "/v1/completions": legacy}

    async def by_path(scope: Scope, receive: Receive, send: Send) -> None:
        await endpoints[scope["path"]](scope, receive, send)

    app.completions = Completions(
        GuardMiddleware(by_path, guards, gw), gw, frozenset(endpoints)
    )
    app.state.gateway = gw
    return app


class MixrouteApp(Starlette):
    """The Starlette app, except that ``POST /v1/chat/completions`` and
    ``/v1/completions`` go straight to ``completions`` (guards, in-flight
    gauge, endpoint). Those endpoints answer every error themselves, so
    Starlette's error, exception and routing layers, which cost more CPU per
    request than the rest of a routed request's own work, are skipped there."""

    completions: Completions | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.completions
        if (
            fast is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in fast.paths
        ):
            scope["app"] = self
            await fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class Completions:
    """The completion endpoints behind their guards, counted in flight, with
    a last-resort 500 for an error nothing else answered."""

    def __init__(self, app: GuardMiddleware, gw: Gateway, paths: frozenset[str]):
        self.app = app
        self.paths = paths
        self.metrics = gw.obs.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.metrics.in_flight_count += 1
        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("request to %s failed unexpectedly", scope["path"])
            try:
                answer = _error(
                    500, "The server had an internal error.", "server_error"
                )
                await answer(scope, receive, send)
            except Exception:
                pass  # the answer had begun: the server closes the connection
        finally:
            self.metrics.in_flight_count -= 1


def _alias(name: str, created: int, what: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "mixroute",
        "description": what,
    }


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    message = {
        404: f"There is no endpoint at {request.url.path}.",
        405: f"The method {request.method} is not allowed on {request.url.path}.",
    }.get(status, "The request cannot be served.")
    return _error(status, message, "invalid_request_error")


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error(500, "The server had an internal error.", "server_error")


def _error(status: int, message: str, type_: str) -> Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": None}}
    return JSONResponse(body, status_code=status)
