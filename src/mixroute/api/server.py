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
from mixroute.obs.logging import LogFormat, formatters

from .live import LiveApp

log = logging.getLogger("mixroute")


def logging_config(level: str, fmt: LogFormat = "text") -> dict[str, Any]:
    """App log (``mixroute``) and access log (``mixroute.access``) apart, as
    text lines or one JSON object per line (``mixroute.obs.logging``)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters(fmt),
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
    log_level: str | None = None,
    config_path: str | Path | None = None,
    log_format: LogFormat | None = None,
) -> None:
    """Serve the gateway until interrupted; the ledger is flushed on the way out.

    ``log_level`` and ``log_format`` default to the config's ``observability``.
    """
    log_level = log_level or config.observability.log_level
    fmt = log_format or config.observability.log_format
    logging.config.dictConfig(logging_config(log_level, fmt))
    listener = _log_off_loop(("mixroute", "mixroute.access", "uvicorn"))
    text = None
    if config_path is not None:
        text = Path(config_path).read_text("utf-8")
    app = LiveApp(config, config_path=config_path, config_text=text, tune_gc=True)
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


def _log_off_loop(names: tuple[str, ...]) -> _Listeners:
    """Move log formatting and writing to a thread: the loop only enqueues."""
    listeners = _Listeners()
    for name in names:
        logger = logging.getLogger(name)
        if not logger.handlers:
            continue
        # One queue per logger: a listener hands each record to all of its
        # handlers, so a shared one would write every line once per handler.
        q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(
            q, *logger.handlers, respect_handler_level=True
        )
        logger.handlers = [_HandOff(q)]
        listener.start()
        listeners.append(listener)
    return listeners


class _HandOff(logging.handlers.QueueHandler):
    """Queues the record as it is: the listener's thread formats it.

    The stock ``prepare`` formats every record on the caller's thread (the
    event loop) so that it could cross a process boundary; these queues stay
    in the process, and mixroute logs only immutable values (strings, numbers),
    so formatting later changes nothing but where the CPU is spent."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class _Listeners(list[logging.handlers.QueueListener]):
    def stop(self) -> None:
        for listener in self:
            listener.stop()


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
        # mixroute reads no client address; rewriting it from X-Forwarded-For
        # headers cost CPU on every request.
        proxy_headers=False,
        lifespan="on",
        # SIGTERM: stop accepting, let requests and streams finish this long.
        timeout_graceful_shutdown=max(1, round(shutdown_timeout_s)),
    )
