"""The response cache on the gateway path is scoped by client key: one
tenant's answers are never served to another, even for the same prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from replica_helpers import config_dict, write_config

from fakes import FakeUpstream
from mixroute.api.live import LiveApp
from mixroute.config import load_config
from mixroute.state.keys import KeyStore


@pytest.fixture
async def gateway(
    tmp_path: Path, urls: dict[str, str]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    store = KeyStore(tmp_path / "keys.sqlite")
    keys = {name: store.create(name)[0] for name in ("alice", "bob", "carol")}
    store.close()
    raw = config_dict(
        urls,
        tmp_path / "usage.sqlite",
        auth={"mode": "on", "keys_path": str(tmp_path / "keys.sqlite")},
        cache={"enabled": True, "similarity": 0.8},
    )
    path = write_config(tmp_path / "mixroute.yaml", raw)
    app = LiveApp(load_config(path), config_path=path)
    await app.startup()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://mixroute.test"
        ) as client:
            yield client, keys
    finally:
        await app.shutdown()


async def _ask(
    client: httpx.AsyncClient, key: str, content: str, **extra: Any
) -> httpx.Response:
    body = {
        "model": "auto:chat",
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }
    r = await client.post(
        "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200, r.text
    return r


async def test_no_answer_crosses_tenants(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
    upstreams: dict[str, FakeUpstream],
) -> None:
    client, keys = gateway
    small = upstreams["small"]
    prompts = ["What is the tallest mountain on Earth?", "Name three primary colours."]
    results: list[tuple[str, str, str]] = []
    for prompt in prompts:
        for tenant in ("alice", "bob", "alice", "bob"):
            before = len(small.received)
            r = await _ask(client, keys[tenant], prompt)
            called = len(small.received) > before
            results.append((tenant, r.headers["x-mixroute-cache"], str(called)))
    # Per prompt: each tenant misses once (calling the upstream), then hits.
    expected = [
        ("alice", "miss", "True"),
        ("bob", "miss", "True"),
        ("alice", "hit", "False"),
        ("bob", "hit", "False"),
    ]
    assert results == expected * len(prompts)

    # A paraphrase that alice's own entry would match by similarity is still
    # a miss for a tenant who never asked (carol has no entry at all).
    near = "What is the tallest mountain on the Earth?"
    assert (await _ask(client, keys["carol"], near)).headers["x-mixroute-cache"] == (
        "miss"
    )
    assert (await _ask(client, keys["alice"], near)).headers["x-mixroute-cache"] == (
        "hit"
    )

    nobody = await client.post(
        "/v1/chat/completions",
        json={"model": "auto:chat", "messages": [{"role": "user", "content": near}]},
    )
    assert nobody.status_code == 401  # no key: no answer, cached or not
