"""The app in-process through httpx.ASGITransport: endpoints, routing, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gateway_kit import build, gateway_of, in_process, make_config

from fakes import Reply

CHAT = "/v1/chat/completions"


def chat(
    model: str = "auto", text: str = "hello there", **extra: Any
) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def test_models_lists_models_auto_and_routes(urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.get("/v1/models")
    ids = [m["id"] for m in r.json()["data"]]
    assert r.status_code == 200
    assert {"auto", "auto:math", "auto:code", "auto:chat", "small", "large"} <= set(ids)


async def test_health_and_readiness(urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["classifier_warm"] is True
    assert set(ready.json()["healthy_upstreams"]) == {"small", "medium", "large"}


async def test_not_ready_without_upstreams() -> None:
    app = build(*make_config({}))
    async with in_process(app) as client:
        r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["healthy_upstreams"] == []


async def test_auto_routes_by_classification(upstreams, urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat(text="solve this integral"))
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "medium"
    assert r.headers["x-mixroute-route"] == "math"
    assert r.headers["x-mixroute-confidence"] == "0.9500"
    assert r.headers["x-mixroute-fallbacks"] == "0"
    assert r.headers["x-mixroute-cache"] == "miss"
    assert r.json()["choices"][0]["message"]["content"] == "Answer from medium."
    sent = upstreams["medium"].received[0]
    assert sent.body["model"] == "up-medium"
    assert sent.path == "/v1/chat/completions"


async def test_low_confidence_goes_to_default_model(urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat(text="tell me something"))
    assert r.headers["x-mixroute-model"] == "large"
    assert r.headers["x-mixroute-route"] == "chat"


async def test_route_alias_and_named_model_skip_classification(urls) -> None:
    app = build(*make_config(urls))
    stub = gateway_of(app).classifier
    async with in_process(app) as client:
        before = stub.calls  # type: ignore[attr-defined]
        a = await client.post(CHAT, json=chat("auto:chat"))
        b = await client.post(CHAT, json=chat("large"))
        assert stub.calls == before  # type: ignore[attr-defined]
    assert a.headers["x-mixroute-model"] == "small"
    assert a.headers["x-mixroute-route"] == "chat"
    assert b.headers["x-mixroute-model"] == "large"


async def test_request_id_taken_from_client_or_generated(urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        a = await client.post(
            CHAT, json=chat("small"), headers={"x-request-id": "abc-1"}
        )
        b = await client.post(CHAT, json=chat("small"))
    assert a.headers["x-request-id"] == "abc-1"
    assert b.headers["x-request-id"].startswith("req_")


async def test_classify_endpoint_decides_without_calling_a_model(
    upstreams, urls
) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post("/v1/classify", json={"prompt": "write python code"})
    body = r.json()
    assert r.status_code == 200
    assert (body["route"], body["model"], body["rule"]) == (
        "code",
        "medium",
        "route:confident",
    )
    assert all(not f.received for f in upstreams.values())


async def test_legacy_completions_forwarded(upstreams, urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(
            "/v1/completions", json={"model": "auto", "prompt": "solve 2x=4"}
        )
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == "Answer from medium."
    assert upstreams["medium"].received[0].path == "/v1/completions"


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"[1, 2]", 400, "invalid_json", None),
        (
            '{"model": "auto", "x": "\xff"}'.encode("latin-1"),
            400,
            "invalid_encoding",
            None,
        ),
        (b'{"model": "auto"}', 400, "missing_required_parameter", "messages"),
        (b'{"model": "auto", "messages": []}', 400, "empty_array", "messages"),
        (b'{"model": "auto", "messages": "hi"}', 400, "invalid_value", "messages"),
        (
            b'{"model": "auto", "messages": [{"role": "wizard", "content": "x"}]}',
            400,
            "invalid_value",
            "messages[0].role",
        ),
        (
            b'{"model": "small", "messages": [{"role": "user", "content": 5}]}',
            400,
            "invalid_value",
            "messages[0].content",
        ),
        (
            b'{"model": "small", "stream": "yes", "messages": [{"role": "user"}]}',
            400,
            "invalid_value",
            "stream",
        ),
        (
            b'{"model": "small", "max_tokens": "9", "messages": [{"role": "user"}]}',
            400,
            "invalid_value",
            "max_tokens",
        ),
        (
            b'{"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}',
            404,
            "model_not_found",
            "model",
        ),
    ],
)
async def test_client_mistakes_are_openai_shaped(
    upstreams, urls, body: bytes, status: int, code: str, param: str | None
) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(
            CHAT, content=body, headers={"content-type": "application/json"}
        )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["code"], err["param"]) == (code, param)
    assert "Traceback" not in r.text
    assert all(not f.received for f in upstreams.values())
    if code == "model_not_found":
        assert "auto:math" in err["message"] and "small" in err["message"]


async def test_body_too_large_is_413_while_reading(urls) -> None:
    app = build(*make_config(urls))
    big = json.dumps(chat("small", "x" * 70_000)).encode()

    async def chunks():  # no content-length: the limit applies while reading
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    async with in_process(app) as client:
        a = await client.post(CHAT, content=big)
        b = await client.post(CHAT, content=chunks())
    for r in (a, b):
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"


async def test_unknown_path_and_method_are_openai_shaped(urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        a = await client.get("/v1/nothing")
        b = await client.get(CHAT)
    assert a.status_code == 404 and "error" in a.json()
    assert b.status_code == 405 and "error" in b.json()


async def test_context_too_long_for_every_candidate(upstreams, urls) -> None:
    small = {"context_window": 1000}
    cfg, text = make_config(
        urls, models={"small": small, "medium": small, "large": small}
    )
    app = build(cfg, text)
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat("auto", "word " * 3000))
        ok = await client.post(CHAT, json=chat("auto", "word " * 100))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "context_length_exceeded"
    assert ok.status_code == 200
    assert sum(len(f.received) for f in upstreams.values()) == 1


async def test_context_skips_candidates_that_are_too_small(upstreams, urls) -> None:
    cfg, text = make_config(urls, models={"small": {"context_window": 1000}})
    app = build(cfg, text)
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat("auto:chat", "word " * 3000))
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "medium"
    assert not upstreams["small"].received


async def test_no_upstream_configured_names_the_variables() -> None:
    app = build(*make_config({}))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat(text="hello"))
        c = await client.post("/v1/classify", json={"prompt": "solve x"})
    assert r.status_code == 503
    assert r.headers["x-should-retry"] == "false"
    msg = r.json()["error"]["message"]
    assert "TEST_LARGE_URL" in msg and "TEST_LARGE_KEY" in msg
    assert c.status_code == 200


async def test_ledger_has_one_row_per_request_with_costs(upstreams, urls) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        await client.post(CHAT, json=chat("small"), headers={"x-request-id": "r1"})
        await client.post(CHAT, content=b"{bad", headers={"x-request-id": "r2"})
        await client.post(CHAT, json=chat("nope"), headers={"x-request-id": "r3"})
        rows = gateway_of(app).ledger.rows()
    by_id = {r["request_id"]: r for r in rows}
    assert len(rows) == 3 and set(by_id) == {"r1", "r2", "r3"}
    ok = by_id["r1"]
    assert (ok["status"], ok["model"], ok["input_tokens"], ok["output_tokens"]) == (
        200,
        "small",
        11,
        7,
    )
    assert ok["cost_usd"] == pytest.approx((11 * 0.1 + 7 * 0.2) / 1e6)
    assert ok["baseline_cost_usd"] == pytest.approx((11 * 10 + 7 * 20) / 1e6)
    assert ok["models_tried"] == "small" and ok["stream"] == 0
    assert by_id["r2"]["status"] == 400 and by_id["r3"]["status"] == 404


async def test_ledger_file_is_wal_and_flushed_on_shutdown(tmp_path, urls) -> None:
    import sqlite3

    path = tmp_path / "usage.sqlite"
    app = build(*make_config(urls, path))
    async with in_process(app) as client:
        for _ in range(5):
            await client.post(CHAT, json=chat("small"))
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT count(*) FROM usage").fetchone()[0] == 5


async def test_secrets_are_not_forwarded_or_leaked(
    monkeypatch, caplog, upstreams, urls
) -> None:
    monkeypatch.setenv("TEST_SMALL_KEY", "sk-provider-secret-123")
    caplog.set_level("DEBUG")
    leaky = {"message": "Incorrect key sk-provider-secret-123", "type": "auth"}
    upstreams["small"].push(Reply(), Reply("status", status=401, error=leaky))
    app = build(*make_config(urls))
    client_headers = {
        "authorization": "Bearer client-key",
        "cookie": "session=1",
        "x-api-key": "client-x",
        "openai-beta": "assistants=v2",
    }
    async with in_process(app) as client:
        ok = await client.post(CHAT, json=chat("small"), headers=client_headers)
        bad = await client.post(CHAT, json=chat("small"), headers=client_headers)
    sent = upstreams["small"].received[0].headers
    assert sent["authorization"] == "Bearer sk-provider-secret-123"
    assert "cookie" not in sent and "x-api-key" not in sent
    assert sent["openai-beta"] == "assistants=v2"
    assert ok.status_code == 200
    assert bad.status_code == 401
    for text in (ok.text, bad.text, str(dict(ok.headers)), caplog.text):
        assert "sk-provider-secret-123" not in text
        assert "client-key" not in text


async def test_an_unconfigured_pick_is_skipped_and_the_rule_says_so(
    upstreams, urls
) -> None:
    partial = {**urls, "medium": None}  # medium has no endpoint
    app = build(*make_config(partial))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=chat("medium"))
        ok = await client.post(CHAT, json=chat("small"))
        rows = gateway_of(app).ledger.rows()
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "large"
    assert r.headers["x-mixroute-rule"] == "explicit:model>skip:unconfigured=medium"
    assert ok.headers["x-mixroute-rule"] == "explicit:model"
    assert {row["rule"] for row in rows} == {
        "explicit:model>skip:unconfigured=medium",
        "explicit:model",
    }
    assert not upstreams["medium"].received
