"""Gateway test helpers: a small config over fake upstreams, the real server.

(A module of its own, not conftest: several test folders have a conftest.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette

from fakes import StubClassifier
from mixroute.api.app import create_app
from mixroute.api.gateway import Gateway
from mixroute.config import parse_config
from mixroute.config.schema import MixrouteConfig
from mixroute.upstream.pool import RetryPolicy
from servers import in_process, serve_url

FAST_RETRY = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05, retry_after_cap_s=1.0)


def make_config(
    urls: dict[str, str | None],
    ledger: Path | str = ":memory:",
    *,
    models: dict[str, dict[str, Any]] | None = None,
    server: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[MixrouteConfig, str]:
    """Three models small/medium/large on ``urls``; routes math, code, chat."""
    prices = {"small": (0.1, 0.2), "medium": (1.0, 2.0), "large": (10.0, 20.0)}
    raw_models = []
    for name, (pin, pout) in prices.items():
        m: dict[str, Any] = {
            "name": name,
            "base_url": urls.get(name) or f"${{TEST_{name.upper()}_URL}}",
            "model": f"up-{name}",
            "api_key_env": f"TEST_{name.upper()}_KEY",
            "price": {"input_per_mtok": pin, "output_per_mtok": pout},
            "timeouts": {"connect": 1.0, "read": 2.0, "total": 4.0},
            "max_retries": 1,
            "circuit_breaker": {"failures": 3, "window_s": 10, "cooldown_s": 0.4},
        }
        m.update((models or {}).get(name, {}))
        raw_models.append(m)
    raw = {
        "version": 1,
        "models": raw_models,
        "routes": [
            {
                "name": "math",
                "candidates": ["medium", "large"],
                "utterances": ["solve x"],
            },
            {
                "name": "code",
                "candidates": ["medium", "large"],
                "utterances": ["python code"],
            },
            {
                "name": "chat",
                "candidates": ["small", "medium"],
                "utterances": ["hello"],
            },
        ],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "large", "fallbacks": {"small": ["medium"]}},
        "server": {
            "ledger_path": str(ledger),
            "max_body_bytes": 65536,
            **(server or {}),
        },
    }
    text = yaml.safe_dump(raw, sort_keys=False)
    return parse_config(text, env=env or {}), text


def build(config: MixrouteConfig, text: str) -> Starlette:
    return create_app(
        config, classifier=StubClassifier(), retry=FAST_RETRY, config_text=text
    )


def gateway_of(app: Starlette) -> Gateway:
    gw: Gateway = app.state.gateway
    return gw


@dataclass
class Served:
    app: Starlette
    url: str

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@contextmanager
def serve(app: Starlette) -> Iterator[Served]:
    """The real server: uvicorn on a free loopback port, in a thread."""
    with serve_url(app) as url:
        yield Served(app, url)


def wait_rows(app: Starlette, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Ledger rows once ``count`` are there: the server writes a row just after
    the client has read the end of the answer."""
    deadline = time.monotonic() + timeout
    while True:
        rows = gateway_of(app).ledger.rows()
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


__all__ = ["build", "gateway_of", "in_process", "make_config", "serve", "wait_rows"]
