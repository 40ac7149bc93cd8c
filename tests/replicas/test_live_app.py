"""``LiveApp`` in-process: each runtime's app lifespan runs (the guards' log
redaction is on while it serves), a reload swaps it and retires the old one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from replica_helpers import config_dict, write_config

from mixroute.api.live import LiveApp
from mixroute.config import load_config

CANARY = "sk-canary-7f3a9c1e5b"


async def test_redaction_is_on_while_serving_and_survives_a_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TEST_SMALL_KEY", CANARY)
    urls = {n: "http://127.0.0.1:9/v1" for n in ("small", "medium", "large")}
    raw = config_dict(urls, tmp_path / "usage.sqlite")
    path = write_config(tmp_path / "mixroute.yaml", raw)
    app = LiveApp(load_config(path), config_path=path)
    log = logging.getLogger("mixroute.test")

    await app.startup()
    try:
        first = app.runtime
        with caplog.at_level(logging.INFO, "mixroute.test"):
            log.info("upstream said %s", CANARY)
        assert CANARY not in caplog.text

        raw["routes"][0]["candidates"] = ["large"]
        write_config(path, raw)
        assert await app.reload("test")
        assert app.runtime is not first
        await asyncio.sleep(0.05)  # the idle old runtime retires
        caplog.clear()
        with caplog.at_level(logging.INFO, "mixroute.test"):
            log.info("upstream said %s", CANARY)
        assert CANARY not in caplog.text
        assert first.gateway.pool._session is None  # old connections closed

        write_config(path, {**raw, "routes": "not a list"})
        current = app.runtime
        assert not await app.reload("test")
        assert app.runtime is current
    finally:
        await app.shutdown()
    caplog.clear()
    with caplog.at_level(logging.INFO, "mixroute.test"):
        log.info("upstream said %s", CANARY)
    assert CANARY in caplog.text  # the app is gone, so is its filter
