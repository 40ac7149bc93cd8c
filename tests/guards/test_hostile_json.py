"""Lone surrogates and deep nesting behind the guards: a 400 with its ledger
row, never a 500, never an upstream call (real gateway, loopback fake)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from guard_helpers import cloud_config

from fakes import FakeUpstream, StubClassifier
from mixroute.api.app import create_app
from servers import in_process

CHAT = "/v1/chat/completions"
BODIES = [
    b'{"model":"cloud","messages":[{"role":"user","content":"mail \\ud800"}]}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"user":"\\udfff"}',
    b'{"model":"cloud","messages":[{"role":"user","content":"hi"}],"x":{"\\ud800":1}}',
    b'{"model":"cloud","messages":' + b"[" * 3000 + b"]" * 3000 + b"}",
]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream("cloud") as fake:
        yield fake


async def test_hostile_json_is_400_behind_the_guards(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    app = create_app(
        cloud_config(ledger, upstream.base_url, ("chat",)),
        classifier=StubClassifier(("chat",)),
    )
    async with in_process(app) as client:
        for _ in range(2):
            for body in BODIES:
                r = await client.post(CHAT, content=body)
                assert r.status_code == 400, (body[:80], r.text)
                assert r.json()["error"]["code"] in (
                    "invalid_encoding",
                    "invalid_json",
                )
        assert not upstream.received
        assert app.state.gateway.pool.breakers["cloud"].state == "closed"
        ok = await client.post(
            CHAT,
            json={
                "model": "cloud",
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert ok.status_code == 200
    db = sqlite3.connect(ledger)
    try:
        (rows,) = db.execute("SELECT COUNT(*) FROM usage").fetchone()
    finally:
        db.close()
    assert rows == 2 * len(BODIES) + 1
