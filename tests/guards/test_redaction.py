"""Planted canary secrets never reach any log output, at any level."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from mixroute.config import load_config
from mixroute.guards.redaction import (
    RedactionFilter,
    install_redaction,
    uninstall_redaction,
)

PROVIDER_KEY = "prov-CANARY-7f3a9b2c4d5e6f708192"
CLIENT_KEY = "mr-CANARYclientkey0123456789abcdefghijklmnopq"
BEARER = "CANARYbearer9f8e7d6c5b4a3928"
EMAIL = "canary.person@example.com"
CARD = "4111 1111 1111 1111"
CANARIES = [PROVIDER_KEY, CLIENT_KEY, BEARER, EMAIL, CARD, "CANARY"]


@pytest.fixture
def redacted(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedactionFilter]:
    monkeypatch.setenv("MIXROUTE_SMALL_API_KEY", PROVIDER_KEY)
    config = load_config(env={})
    f = install_redaction(config)
    yield f
    uninstall_redaction()


def _emit_everywhere() -> None:
    names = ["mixroute", "mixroute.access", "mixroute.guards", "uvicorn.error", ""]
    names.append("made.after.install")
    for name in names:
        logger = logging.getLogger(name)
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
            logger.log(level, "key %s client %s", PROVIDER_KEY, CLIENT_KEY)
            logger.log(level, "headers %s", {"Authorization": f"Bearer {BEARER}"})
            logger.log(level, "user %s paid with %s", EMAIL, CARD)
            logger.log(level, "extra field", extra={"api_key": PROVIDER_KEY})
            logger.log(level, "Authorization: Bearer %s", BEARER)
        try:
            raise RuntimeError(f"upstream refused key {PROVIDER_KEY} for {EMAIL}")
        except RuntimeError:
            logger.exception("request failed with %s", CLIENT_KEY)
        logger.critical("stack", stack_info=True)


def test_no_canary_reaches_any_handler(
    redacted: RedactionFilter,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    late = io.StringIO()
    handler = logging.StreamHandler(late)  # added after install: factory path
    handler.setFormatter(
        logging.Formatter("%(levelname)s %(name)s %(message)s %(api_key)s")
    )
    handler.addFilter(lambda r: hasattr(r, "api_key"))
    plain = io.StringIO()
    plain_handler = logging.StreamHandler(plain)
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(plain_handler)
    try:
        _emit_everywhere()
    finally:
        root.removeHandler(handler)
        root.removeHandler(plain_handler)

    captured = capsys.readouterr()
    outputs = {
        "caplog": caplog.text,
        "caplog.messages": "\n".join(caplog.messages),
        "late handler": late.getvalue(),
        "plain handler": plain.getvalue(),
        "stdout": captured.out,
        "stderr": captured.err,
    }
    assert "request failed" in outputs["plain handler"]
    assert "Traceback" in outputs["plain handler"]
    assert "[REDACTED]" in outputs["plain handler"]
    assert "[EMAIL]" in outputs["plain handler"]
    assert "[CREDIT_CARD]" in outputs["plain handler"]
    for where, text in outputs.items():
        for canary in CANARIES:
            assert canary not in text, f"{canary!r} leaked into {where}"


def test_the_filter_alone_masks_headers_tokens_and_pii() -> None:
    f = RedactionFilter([PROVIDER_KEY])
    text = (
        f"authorization={PROVIDER_KEY} x-api-key: abc123secretvalue "
        f"Bearer {BEARER} {CLIENT_KEY} sk-proj-ABCDEFGHIJKLMNOPQRSTUV12 {EMAIL}"
    )
    out = f.redact(text)
    for secret in [PROVIDER_KEY, "abc123secretvalue", BEARER, CLIENT_KEY, EMAIL]:
        assert secret not in out
    assert "sk-proj-ABCDEFGHIJKLMNOPQRSTUV12" not in out
    assert out.count("[REDACTED]") >= 3


def test_a_broken_format_string_does_not_leak_its_arguments(
    redacted: RedactionFilter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("mixroute").info("two %s %s", CLIENT_KEY)
    assert CLIENT_KEY not in caplog.text


def test_uninstall_restores_plain_logging(caplog: pytest.LogCaptureFixture) -> None:
    install_redaction(None, extra_secrets=["CANARY-value-123"])
    uninstall_redaction()
    caplog.set_level(logging.INFO)
    logging.getLogger("mixroute").info("CANARY-value-123")
    assert "CANARY-value-123" in caplog.text
