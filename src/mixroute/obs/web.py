"""HTTP side of observability: ``/metrics``, ``/dashboard`` and its data.

``/dashboard`` is a static page shipped in ``mixroute/dashboard/`` (HTML, CSS
and JS, no build step, no third-party origin). It polls ``/dashboard/data``,
which is built from the observer's live totals, the circuit breakers and, when
the policy engine runs, its A/B arms and budgets.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from mixroute.api.gateway import Gateway
    from mixroute.policy.engine import PolicyEngine

log = logging.getLogger("mixroute.obs")
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
# The page may talk to its own origin only; no inline script, no CDN.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def _asset(name: str) -> bytes:
    return resources.files("mixroute.dashboard").joinpath(name).read_bytes()


def obs_routes(gateway: Gateway) -> list[Route]:
    """The ``/metrics`` and dashboard routes for the app serving ``gateway``."""
    config = gateway.config.observability
    routes: list[Route] = []

    async def metrics(request: Request) -> Response:
        if gateway.engine is not None:
            await _refresh_budgets(gateway)
        return Response(gateway.obs.metrics.render(), media_type=CONTENT_TYPE)

    async def page(request: Request) -> Response:
        return Response(
            _asset("index.html"),
            media_type="text/html; charset=utf-8",
            headers={"content-security-policy": _CSP, "cache-control": "no-cache"},
        )

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _ASSETS:
            err = {
                "message": f"There is no endpoint at {request.url.path}.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            return JSONResponse({"error": err}, 404)
        return Response(_asset(name), media_type=_ASSETS[name])

    async def data(request: Request) -> Response:
        return JSONResponse(await dashboard_data(gateway))

    if config.metrics:
        routes.append(Route("/metrics", metrics, methods=["GET"]))
    if config.dashboard:
        routes += [
            Route("/dashboard", page, methods=["GET"]),
            Route("/dashboard/data", data, methods=["GET"]),
            Route("/dashboard/{name}", asset, methods=["GET"]),
        ]
    return routes


async def dashboard_data(gateway: Gateway) -> dict[str, Any]:
    """Everything the dashboard shows, as one JSON-ready object."""
    cfg = gateway.config
    out = gateway.obs.live.snapshot()
    circuits = gateway.obs.circuits()
    out["generated_at"] = time.time()
    out["baseline_model"] = cfg.policies.default_model
    out["upstreams"] = [
        {
            "model": m.name,
            "configured": m.configured,
            "state": circuits.get(m.name, "closed") if m.configured else "unset",
        }
        for m in cfg.models
    ]
    out["ab"] = {}
    out["budgets"] = {}
    if gateway.engine is not None:
        try:
            out["ab"] = await gateway.engine.stats()
            out["budgets"] = await budget_remaining(gateway.engine)
        except Exception:
            # State may be degraded (Redis away); the page still shows the rest.
            log.warning("dashboard: policy statistics are unavailable", exc_info=True)
    return out


async def budget_remaining(engine: PolicyEngine) -> dict[str, float]:
    """USD left per global or per-route budget this period.

    Per-key budgets are left out: one series per client would be unbounded.
    """
    now = datetime.now(UTC)
    out: dict[str, float] = {}
    for b in engine.budgets.budgets:
        if b.scope == "key" or (b.scope == "route" and b.match == "*"):
            continue
        route = None if b.scope == "global" else b.match
        for slot in engine.budgets.slots(None, route, now):
            if slot.config.name == b.name:
                spent = await engine.budgets.spent(slot)
                out[b.name] = max(0.0, b.limit_usd - spent)
    return out


async def _refresh_budgets(gateway: Gateway) -> None:
    assert gateway.engine is not None
    try:
        left = await budget_remaining(gateway.engine)
    except Exception:
        log.warning("metrics: budgets are unavailable", exc_info=True)
        return
    for name, usd in left.items():
        gateway.obs.metrics.budget.labels(name).set(usd)
