"""Retries, Retry-After, timeouts, circuit breakers and fallback (in-process)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway_kit import build, gateway_of, in_process, make_config

from fakes import Reply

CHAT = "/v1/chat/completions"


def chat(model: str = "small") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


async def test_5xx_is_retried_then_falls_back(upstreams, urls) -> None:
    upstreams["small"].push(Reply("status", status=500), Reply("status", status=502))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat(), headers={"x-request-id": "f1"})
        rows = gateway_of(app).ledger.rows()
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "medium"
    assert r.headers["x-mixroute-fallbacks"] == "1"
    assert len(upstreams["small"].received) == 2  # one try + max_retries=1
    assert rows[0]["models_tried"] == "small,medium"
    assert rows[0]["model"] == "medium"


async def test_retry_succeeds_on_the_same_model(upstreams, urls) -> None:
    upstreams["small"].push(Reply("status", status=503))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat())
    assert r.headers["x-mixroute-model"] == "small"
    assert r.headers["x-mixroute-fallbacks"] == "0"


async def test_429_retry_after_is_honoured(upstreams, urls) -> None:
    upstreams["small"].push(Reply("status", status=429, retry_after="0.3"))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        t0 = time.monotonic()
        r = await client.post(CHAT, json=chat())
        took = time.monotonic() - t0
    assert r.headers["x-mixroute-model"] == "small"
    assert took >= 0.3
    gap = upstreams["small"].received[1].at - upstreams["small"].received[0].at
    assert gap >= 0.29


async def test_429_retry_after_beyond_the_cap_falls_back_at_once(
    upstreams, urls
) -> None:
    upstreams["small"].push(Reply("status", status=429, retry_after="30"))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        t0 = time.monotonic()
        r = await client.post(CHAT, json=chat())
    assert time.monotonic() - t0 < 1.0
    assert r.headers["x-mixroute-model"] == "medium"
    assert len(upstreams["small"].received) == 1


async def test_provider_400_is_passed_on_not_retried_not_fallen_back(
    upstreams, urls
) -> None:
    err = {
        "message": "max_tokens is too large",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "bad_max",
    }
    upstreams["small"].push(Reply("status", status=400, error=err))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat())
    assert r.status_code == 400
    assert r.json()["error"] == err
    assert len(upstreams["small"].received) == 1
    assert not upstreams["medium"].received


async def test_silent_upstream_times_out_and_falls_back(upstreams, urls) -> None:
    fast = {"timeouts": {"connect": 0.5, "read": 0.3, "total": 0.6}, "max_retries": 0}
    upstreams["small"].push(Reply("hang"))
    app = build(*make_config(urls, models={"small": fast}))
    async with in_process(app) as client:
        t0 = time.monotonic()
        r = await client.post(CHAT, json=chat())
    assert time.monotonic() - t0 < 1.5
    assert r.headers["x-mixroute-model"] == "medium"


async def test_connect_error_is_retried_then_falls_back(upstreams, urls) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # bound, not listening
    app = build(*make_config({**urls, "small": dead}))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat())
    sock.close()
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "medium"


async def test_all_candidates_failed_is_503(upstreams, urls) -> None:
    for f in upstreams.values():
        f.default = Reply("status", status=500)
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat())
        rows = gateway_of(app).ledger.rows()
    assert r.status_code == 503
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "small" in err["message"] and "large" in err["message"]
    assert rows[0]["status"] == 503 and rows[0]["models_tried"] == "small,medium,large"


async def test_circuit_opens_then_half_open_probe_closes_it(upstreams, urls) -> None:
    upstreams["small"].default = Reply("status", status=500)
    single = {"max_retries": 0}
    cfg, text = make_config(urls, models={"small": single})
    app = build(cfg, text)
    breaker = gateway_of(app).pool.breakers["small"]
    async with in_process(app) as client:
        for _ in range(3):
            await client.post(CHAT, json=chat())
        assert breaker.state == "open"
        seen = len(upstreams["small"].received)
        r = await client.post(CHAT, json=chat())
        assert r.headers["x-mixroute-model"] == "medium"
        assert len(upstreams["small"].received) == seen  # skipped while open
        ready = (await client.get("/readyz")).json()
        assert "small" not in ready["healthy_upstreams"]

        await asyncio.sleep(0.45)  # cool-down 0.4 s
        upstreams["small"].default = Reply()
        r = await client.post(CHAT, json=chat())
        assert r.headers["x-mixroute-model"] == "small"
        assert breaker.state == "closed"


async def test_failed_probe_reopens_the_circuit(upstreams, urls) -> None:
    upstreams["small"].default = Reply("status", status=500)
    cfg, text = make_config(urls, models={"small": {"max_retries": 0}})
    app = build(cfg, text)
    breaker = gateway_of(app).pool.breakers["small"]
    async with in_process(app) as client:
        for _ in range(3):
            await client.post(CHAT, json=chat())
        await asyncio.sleep(0.45)
        seen = len(upstreams["small"].received)
        await client.post(CHAT, json=chat())
        assert len(upstreams["small"].received) == seen + 1  # the one probe
        assert breaker.state == "open"
