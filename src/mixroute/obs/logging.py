"""Log formats: one JSON object per line, or the plain text line.

The access log (logger ``mixroute.access``) carries each request's fields as
``extra`` attributes of its record (see ``mixroute.obs.access_fields``); the
JSON formatter writes them as top-level keys, the text formatter keeps the
readable message. App logs (``mixroute.*``) use the same formatter, so a
collector parses one shape. Redaction (``mixroute.guards.redaction``) runs on
records before any formatter sees them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "_mixroute_redacted",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def formatters(fmt: LogFormat) -> dict[str, dict[str, Any]]:
    """``dictConfig`` formatters ``app`` and ``access`` for ``fmt``."""
    if fmt == "json":
        spec = {"()": f"{__name__}.JsonFormatter"}
        return {"app": spec, "access": dict(spec)}
    return {
        "app": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "access": {"format": "%(asctime)s %(message)s"},
    }
