"""A logging filter that keeps secrets and PII out of every log line.

It masks the values of the provider key variables named in the config,
mixroute client keys (``mr-...``), ``Authorization``-style headers, bearer
tokens, vendor API keys and the PII the detector finds, in the message, its
arguments, ``extra`` fields, exception text and stack text.

``install_redaction`` puts it on the root logger, on every handler the root
has, and on every existing logger (``mixroute.*``, ``uvicorn.*`` and the rest).
It also wraps the log record factory and sets a logger class, so records from
loggers and handlers made later are masked when they are created.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from mixroute.config.schema import MixrouteConfig
from mixroute.guards.pii import PiiDetector

MASK = "[REDACTED]"
_HEADER = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api-key|cookie|set-cookie)"
    r"([\"']?\s*[:=]\s*[\"']?)((?:bearer|basic|token)\s+)?([^\s\"',;}]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_CLIENT_KEY = re.compile(r"mr-[A-Za-z0-9_-]{16,}")
# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RedactionFilter(logging.Filter):
    """Rewrites each record so that no secret or PII survives formatting."""

    def __init__(
        self, secrets: Iterable[str] = (), detector: PiiDetector | None = None
    ) -> None:
        super().__init__()
        # Longest first, so a key that contains another is masked whole.
        self.secrets = sorted(
            {s for s in secrets if len(s) >= 6}, key=len, reverse=True
        )
        self.detector = detector or PiiDetector()

    def redact(self, text: str) -> str:
        """``text`` with secrets masked and PII replaced by its type."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _HEADER.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
        text = _BEARER.sub(lambda m: m.group(1) + " " + MASK, text)
        text = _CLIENT_KEY.sub(MASK, text)
        findings = self.detector.detect(text)
        for f in reversed(findings):
            text = text[: f.start] + f"[{f.type.upper()}]" + text[f.end :]
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_mixroute_redacted", False):
            self._redact_message(record)
        # ``extra`` fields are set after the record factory runs, so they are
        # checked on every pass.
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                masked = self.redact(value)
                if masked != value:
                    setattr(record, name, masked)
        return True

    def _redact_message(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not leak its arguments
            message = f"{record.msg!s} (unformattable log arguments)"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redact(text)
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        record._mixroute_redacted = True


_installed: list[tuple[Any, RedactionFilter]] = []
_factory: Callable[..., logging.LogRecord] | None = None
_logger_class = logging.getLoggerClass()


def provider_secrets(config: MixrouteConfig) -> list[str]:
    """The values of the environment variables that hold provider keys."""
    values = []
    for model in config.models:
        if model.api_key_env:
            value = os.environ.get(model.api_key_env)
            if value:
                values.append(value)
    return values


def install_redaction(
    config: MixrouteConfig | None = None, extra_secrets: Iterable[str] = ()
) -> RedactionFilter:
    """Put one ``RedactionFilter`` everywhere a record can pass; returns it.

    Calling it again replaces the previous filter (e.g. after a config reload).
    """
    global _factory
    uninstall_redaction()
    secrets = [*(provider_secrets(config) if config else []), *extra_secrets]
    redactor = RedactionFilter(secrets)

    root = logging.getLogger()
    targets: list[Any] = [root, *root.handlers]
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            targets += [logger, *logger.handlers]
    for target in targets:
        target.addFilter(redactor)
        _installed.append((target, redactor))

    class RedactingLogger(_logger_class):  # type: ignore[valid-type,misc]
        def makeRecord(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
            record: logging.LogRecord = super().makeRecord(*args, **kwargs)
            redactor.filter(record)
            return record

    logging.setLoggerClass(RedactingLogger)

    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        redactor.filter(record)
        return record

    _factory = previous
    logging.setLogRecordFactory(factory)
    return redactor


def uninstall_redaction(only: RedactionFilter | None = None) -> None:
    """Remove what ``install_redaction`` added (used by tests and reloads).

    With ``only``, nothing happens unless that filter is the one installed
    (an app stopping must not unmask another app's logs).
    """
    global _factory
    if only is not None and not any(r is only for _, r in _installed):
        return
    for target, redactor in _installed:
        target.removeFilter(redactor)
    _installed.clear()
    if _factory is not None:
        logging.setLogRecordFactory(_factory)
        _factory = None
        logging.setLoggerClass(_logger_class)
