"""``run_server``: uvicorn with the app, logging configured once, graceful stop."""

from __future__ import annotations

import logging
import logging.config
from pathlib import Path
from typing import Any

import uvicorn

from mixroute.config.schema import MixrouteConfig

from .live import LiveApp

log = logging.getLogger("mixroute")


def logging_config(level: str) -> dict[str, Any]:
    """App log (``mixroute``) and access log (``mixroute.access``) apart."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "app": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "access": {"format": "%(asctime)s %(message)s"},
        },
        "handlers": {
            "app": {"class": "logging.StreamHandler", "formatter": "app"},
            "access": {"class": "logging.StreamHandler", "formatter": "access"},
        },
        "loggers": {
            "mixroute": {"handlers": ["app"], "level": level, "propagate": False},
            "mixroute.access": {
                "handlers": ["access"],
                "level": level,
                "propagate": False,
            },
            "uvicorn": {"handlers": ["app"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
        },
    }


def _pick(module: str, name: str, fallback: str) -> str:
    try:
        __import__(module)
    except ImportError:
        return fallback
    return name


def run_server(
    config: MixrouteConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    config_path: str | Path | None = None,
) -> None:
    """Serve the gateway until interrupted; the ledger is flushed on the way out."""
    logging.config.dictConfig(logging_config(log_level))
    text = None
    if config_path is not None:
        text = Path(config_path).read_text("utf-8")
    app = LiveApp(config, config_path=config_path, config_text=text)
    bind_host = host or config.server.host
    bind_port = config.server.port if port is None else port
    log.info(
        "mixroute serving %d models and %d routes on http://%s:%d/v1",
        len(config.models),
        len(config.routes),
        bind_host,
        bind_port,
    )
    uvicorn.run(
        app,
        host=bind_host,
        port=bind_port,
        loop=_pick("uvloop", "uvloop", "asyncio"),
        http=_pick("httptools", "httptools", "h11"),
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        # SIGTERM: stop accepting, let requests and streams finish this long.
        timeout_graceful_shutdown=config.server.shutdown_timeout_s,
    )
