"""``run_server``: uvicorn with the app, logging configured once, graceful stop."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
import queue
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
    listener = _log_off_loop(("mixroute", "mixroute.access", "uvicorn"))
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
    try:
        _serve(app, bind_host, bind_port, log_level, config.server.shutdown_timeout_s)
    finally:
        listener.stop()


def _log_off_loop(names: tuple[str, ...]) -> logging.handlers.QueueListener:
    """Move log formatting and writing to a thread: the loop only enqueues."""
    handlers: list[logging.Handler] = []
    q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    for name in names:
        logger = logging.getLogger(name)
        for h in logger.handlers:
            if h not in handlers:
                handlers.append(h)
        logger.handlers = [logging.handlers.QueueHandler(q)]
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=True)
    listener.start()
    return listener


def _serve(
    app: Any, host: str, port: int, log_level: str, shutdown_timeout_s: float
) -> None:
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=_pick("uvloop", "uvloop", "asyncio"),
        http=_pick("httptools", "httptools", "h11"),
        log_config=None,
        log_level=log_level.lower(),
        access_log=False,
        lifespan="on",
        # SIGTERM: stop accepting, let requests and streams finish this long.
        timeout_graceful_shutdown=max(1, round(shutdown_timeout_s)),
    )
