"""Hostile bodies and odd upstream answers: 4xx for the client's mistakes, never
a 500, never a circuit opened by our own request (in-process, loopback fakes)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from gateway_kit import FAST_RETRY, build, gateway_of, in_process, make_config, serve

from fakes import FakeUpstream, Reply
from mixroute.errors import UnsendableRequest
from mixroute.providers.base import UpstreamRequest
from mixroute.upstream.pool import UpstreamPool

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}
LONE = "\\ud800"  # a JSON escape of a lone high surrogate
LONE_STR = "\ud800"  # the decoded string: no UTF-8 form

# A lone surrogate in every kind of field a chat request may carry.
SURROGATE_CHATS = [
    '{"model":"small","messages":[{"role":"user","content":"hi"}],'
    '"metadata":{"k":"' + LONE + '"}}',
    '{"model":"small","messages":[{"role":"user","content":"hi","name":"'
    + LONE
    + '"}]}',
    '{"model":"small","messages":[{"role":"user","content":"hi"}],"user":"'
    + LONE
    + '"}',
    '{"model":"small","messages":[{"role":"user","content":"hi"}],"stop":["'
    + LONE
    + '"]}',
    '{"model":"small","messages":[{"role":"user","content":"hi"}],'
    '"tools":[{"type":"function","function":{"name":"' + LONE + '"}}]}',
    '{"model":"small","messages":[{"role":"user","content":"hi"}],"x_' + LONE + '":1}',
    '{"model":"small","messages":[{"role":"user","content":"a' + LONE + 'b"}]}',
    '{"model":"auto","messages":[{"role":"user","content":"' + LONE + '"}]}',
]


def _deep(depth: int = 2000) -> bytes:
    return ("[" * depth + "]" * depth).encode()


def _deep_object(field: str, depth: int = 2000) -> bytes:
    return ('{"' + field + '":' + "[" * depth + "]" * depth + "}").encode()


async def test_lone_surrogates_are_400_and_open_no_circuit(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        for _ in range(2):  # more than the breakers' 3 failures in all
            for body in SURROGATE_CHATS:
                r = await client.post(CHAT, content=body.encode(), headers=JSON)
                assert r.status_code == 400, body
                err = r.json()["error"]
                assert err["type"] == "invalid_request_error"
                assert err["code"] == "invalid_encoding"
                assert "surrogate" in err["message"]
        gw = gateway_of(app)
        assert {b.state for b in gw.pool.breakers.values()} == {"closed"}
        assert all(not u.received for u in upstreams.values())
        plain = {"model": "small", "messages": [{"role": "user", "content": "x"}]}
        ok = await client.post(CHAT, json=plain)
        rows = gw.ledger.rows()
    assert ok.status_code == 200
    assert len(rows) == 2 * len(SURROGATE_CHATS) + 1


async def test_a_surrogate_pair_escape_is_fine(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    app = build(*make_config(urls))
    body = '{"model":"small","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}'
    async with in_process(app) as client:
        r = await client.post(CHAT, content=body.encode(), headers=JSON)
    assert r.status_code == 200
    assert upstreams["small"].received[0].body["messages"][0]["content"] == "\U0001f600"


async def test_lone_surrogates_in_prompt_and_feedback_are_400(
    urls: dict[str, str | None],
) -> None:
    app = build(*make_config(urls))
    prompt = '{"model":"small","prompt":"' + LONE + '"}'
    classify = '{"prompt":"' + LONE + '"}'
    feedback = '{"request_id":"' + LONE + '","rating":1}'
    async with in_process(app) as client:
        for path, body in (
            ("/v1/completions", prompt),
            ("/v1/classify", classify),
            ("/v1/feedback", feedback),
        ):
            r = await client.post(path, content=body.encode(), headers=JSON)
            assert r.status_code == 400, path
            assert r.json()["error"]["code"] == "invalid_encoding", path


async def test_an_unencodable_body_is_not_an_upstream_failure(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    config, _ = make_config(urls)
    model = config.model("small")
    pool = UpstreamPool(config, FAST_RETRY)
    await pool.start()
    try:
        req = UpstreamRequest(
            url=f"{urls['small']}/chat/completions",
            headers={},
            json={
                "model": "up-small",
                "messages": [{"role": "user", "content": LONE_STR}],
            },
        )
        for _ in range(6):
            with pytest.raises(UnsendableRequest):
                await pool.request_answer(model, req, {})
        assert pool.breakers["small"].state == "closed"
    finally:
        await pool.close()
    assert not upstreams["small"].received


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, _deep()),
        (CHAT, _deep_object("messages")),
        ("/v1/completions", _deep_object("prompt")),
        ("/v1/classify", _deep_object("messages")),
        ("/v1/feedback", _deep_object("request_id")),
    ],
)
async def test_deep_nesting_is_400_invalid_json(
    urls: dict[str, str | None], path: str, body: bytes
) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(path, content=body, headers=JSON)
        rows = gateway_of(app).ledger.rows()
    assert r.status_code == 400
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == "invalid_json"
    assert err["type"] == "invalid_request_error"
    if path in (CHAT, "/v1/completions"):
        assert len(rows) == 1 and rows[0]["status"] == 400


async def test_feedback_body_is_bounded(urls: dict[str, str | None]) -> None:
    app = build(*make_config(urls, server={"max_body_bytes": 4096}))
    big = b'{"request_id":"' + b"a" * 8000 + b'","rating":1}'
    async with in_process(app) as client:
        r = await client.post("/v1/feedback", content=big, headers=JSON)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request_too_large"


SECRET = "sk-test-SECRET0123456789abcdef"


@pytest.mark.parametrize(
    "reply",
    [
        Reply("status", status=200, error={"message": f"bad key {SECRET}"}),
        Reply("raw", text="{}"),
        Reply("raw", text='{"choices": null, "detail": "' + SECRET + '"}'),
        Reply("raw", text='{"choices": "nope"}'),
    ],
)
async def test_a_200_without_choices_falls_back(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None], reply: Reply
) -> None:
    upstreams["small"].push(reply, reply)
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=_chat())
        rows = gateway_of(app).ledger.rows()
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "medium"
    assert r.json()["choices"][0]["message"]["content"] == "Answer from medium."
    assert SECRET not in r.text
    assert rows[0]["models_tried"] == "small,medium"


async def test_a_200_without_choices_everywhere_is_503_without_the_key(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    bad = Reply("status", status=200, error={"message": f"bad key {SECRET}"})
    for u in upstreams.values():
        u.default = bad
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=_chat())
    assert r.status_code == 503
    assert SECRET not in r.text
    assert r.json()["error"]["type"] == "server_error"


async def test_an_upstream_lone_surrogate_is_served_escaped(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    upstreams["small"].push(Reply(text="a\ud800b"))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=_chat())
    assert r.status_code == 200
    assert b"\\ud800" in r.content
    assert json.loads(r.content)["choices"][0]["message"]["content"] == "a\ud800b"


def _chat() -> dict[str, Any]:
    return {"model": "small", "messages": [{"role": "user", "content": "hello"}]}


async def test_a_megabyte_prompt_does_not_stall_the_event_loop(
    urls: dict[str, str | None],
) -> None:
    # The prompt does not fit any window whole, so the policy weighs trimming:
    # its tokenizer passes (about a second each) must run off the event loop.
    app = build(*make_config(urls, server={"max_body_bytes": 2_000_000}))
    big = {
        "model": "small",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "word " * 200_000},
        ],
    }
    warm = {"model": "small", "messages": [{"role": "user", "content": "w " * 3000}]}
    with serve(app) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await client.post(CHAT, json=warm)  # loads the tokenizer
            task = asyncio.ensure_future(client.post(CHAT, json=big))
            worst = 0.0
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as probe:
                for _ in range(500):
                    if task.done():
                        break
                    started = time.perf_counter()
                    assert (await probe.get("/healthz")).status_code == 200
                    worst = max(worst, time.perf_counter() - started)
                    await asyncio.sleep(0.02)
            r = await task
    assert r.status_code == 400  # context_length_exceeded, found off the loop
    assert worst < 0.5, f"/healthz waited {worst:.2f} s"


async def test_all_failed_names_no_model_and_passes_the_shortest_retry_after(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    for u, wait in zip(upstreams.values(), ("30", "20", "40"), strict=True):
        u.default = Reply("status", status=429, retry_after=wait)
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=_chat())
        s = await client.post(CHAT, json={**_chat(), "stream": True})
    for resp in (r, s):
        assert resp.status_code == 503
        assert "x-mixroute-model" not in resp.headers
        assert resp.headers["retry-after"] == "20"


async def test_all_failed_without_429s_has_no_retry_after(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    upstreams["small"].default = Reply("status", status=429, retry_after="20")
    upstreams["medium"].default = Reply("status", status=500)
    upstreams["large"].default = Reply("status", status=500)
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json=_chat())
    assert r.status_code == 503
    assert "x-mixroute-model" not in r.headers
    assert "retry-after" not in r.headers


async def test_an_unknown_dashboard_asset_is_an_openai_shaped_404(
    urls: dict[str, str | None],
) -> None:
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.get("/dashboard/nope.js")
    assert r.status_code == 404
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert {"message", "type", "param", "code"} <= set(err)
    assert "/dashboard/nope.js" in err["message"]


async def test_an_upstream_lone_surrogate_in_a_stream_is_served_escaped(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None]
) -> None:
    upstreams["small"].push(Reply(text="a\ud800b", chunks=1))
    app = build(*make_config(urls))
    async with in_process(app) as client:
        r = await client.post(CHAT, json={**_chat(), "stream": True})
    assert r.status_code == 200
    assert b"\\ud800" in r.content
    assert r.content.rstrip().endswith(b"data: [DONE]")


@pytest.mark.parametrize(
    "messages",
    [["hi"], [None], [["x"]], [1], ["hi", {"role": "user", "content": "ok"}]],
)
async def test_auto_with_message_list_of_non_objects_is_400(
    upstreams: dict[str, FakeUpstream], urls: dict[str, str | None], messages: Any
) -> None:
    # The real classifier: its cache is looked up before the body is validated.
    from mixroute.api.app import create_app

    config, text = make_config(urls)
    app = create_app(config, retry=FAST_RETRY, config_text=text)
    async with in_process(app) as client:
        for _ in range(2):  # the second time the classifier cache is warm
            r = await client.post(CHAT, json={"model": "auto", "messages": messages})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["type"] == "invalid_request_error"
