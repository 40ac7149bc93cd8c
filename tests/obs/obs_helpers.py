"""Observability test helpers: a small config over loopback fakes, the real
server (uvicorn on a free port in a thread), the app in-process."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette

from fakes import StubClassifier
from mixroute.api.app import create_app
from mixroute.config import parse_config
from mixroute.config.schema import MixrouteConfig
from mixroute.upstream.pool import RetryPolicy

FAST_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, retry_after_cap_s=1.0)
PRICES = {"small": (0.1, 0.2), "medium": (1.0, 2.0), "large": (10.0, 20.0)}


def obs_config(
    urls: dict[str, str], ledger: Path | str = ":memory:", **extra: Any
) -> MixrouteConfig:
    """small/medium/large on ``urls``; routes math, code, chat; premium large."""
    models = []
    for name, (pin, pout) in PRICES.items():
        models.append(
            {
                "name": name,
                "base_url": urls[name],
                "model": f"up-{name}",
                "price": {"input_per_mtok": pin, "output_per_mtok": pout},
                "timeouts": {"connect": 1.0, "read": 2.0, "total": 4.0},
                "max_retries": 0,
                "circuit_breaker": {"failures": 2, "window_s": 10, "cooldown_s": 30},
            }
        )
    raw: dict[str, Any] = {
        "version": 1,
        "models": models,
        "routes": [
            {"name": "math", "candidates": ["medium", "large"], "utterances": ["x"]},
            {"name": "code", "candidates": ["medium", "large"], "utterances": ["y"]},
            {"name": "chat", "candidates": ["small", "medium"], "utterances": ["z"]},
        ],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "large"},
        "server": {"ledger_path": str(ledger)},
        # Client keys in the working folder must not switch auth on here.
        "auth": {"mode": "off"},
        **extra,
    }
    return parse_config(yaml.safe_dump(raw, sort_keys=False), env={})


def build_app(config: MixrouteConfig) -> Starlette:
    return create_app(config, classifier=StubClassifier(), retry=FAST_RETRY)


@asynccontextmanager
async def in_process(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app through ``httpx.ASGITransport``, with its lifespan run."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mixroute.test"
        ) as client:
            yield client


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The real server on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="asyncio",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True
    )
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
