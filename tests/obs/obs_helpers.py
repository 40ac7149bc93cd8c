"""Observability test helpers: a small config over loopback fakes, the real
server (uvicorn on a free port in a thread), the app in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette

from fakes import StubClassifier
from mixroute.api.app import create_app
from mixroute.config import parse_config
from mixroute.config.schema import MixrouteConfig
from mixroute.upstream.pool import RetryPolicy
from servers import in_process, serve_url

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


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """The real server on a free loopback port; yields its base URL."""
    with serve_url(app) as url:
        yield url


__all__ = ["build_app", "in_process", "obs_config", "serve"]
