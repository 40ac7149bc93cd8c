"""Reloads give memory back: a replaced config's classifier is not kept alive."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import httpx
from replica_helpers import config_dict, write_config

from mixroute.api.live import LiveApp
from mixroute.config import load_config


async def _retired(app: LiveApp) -> None:
    # The old runtime retires in a task once its requests are done.
    for _ in range(200):
        if not app._retiring:
            return
        await asyncio.sleep(0.02)


async def test_classifiers_of_replaced_configs_are_freed(
    tmp_path: Path, urls: dict[str, str]
) -> None:
    raw = config_dict(urls, tmp_path / "usage.sqlite")
    path = write_config(tmp_path / "mixroute.yaml", raw)
    app = LiveApp(load_config(path), config_path=path)
    await app.startup()
    try:
        first = weakref.ref(app.runtime.gateway.classifier)
        # Each edit changes the utterances, so each reload builds a classifier.
        for i in range(3):
            raw["routes"][0]["utterances"] = ["hi", f"hello number {i}"]
            write_config(path, raw)
            assert await app.reload("test")
            await _retired(app)
        # The new config serves (the fake upstreams are real loopback servers).
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            turn = {"role": "user", "content": "hi"}
            body = {"model": "auto:chat", "messages": [turn]}
            assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
        gc.collect()
        assert first() is None, "a replaced config's classifier is still alive"
    finally:
        await app.shutdown()
