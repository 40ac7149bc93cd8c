"""A whole answer that an OpenAI-compatible upstream sends with a UTF-8 BOM
reaches the client as plain UTF-8 JSON (the BOM is not passed on as sent)."""

from __future__ import annotations

import json

import httpx
from gateway_kit import build, make_config, serve

from fakes import FakeUpstream, Reply

ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "up-small",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "ok"},
            "finish_reason": "stop",
        }
    ],
}


def test_an_answer_with_a_bom_is_served_without_it() -> None:
    with FakeUpstream("small") as up:
        up.push(Reply(kind="raw", text="\ufeff" + json.dumps(ANSWER)))
        app = build(*make_config({"small": up.base_url}))
        with serve(app) as s, httpx.Client(timeout=10) as c:
            r = c.post(
                f"{s.base_url}/chat/completions",
                json={
                    "model": "small",
                    "messages": [{"role": "user", "content": "hi"}],
                },
            )
    assert r.status_code == 200
    assert not r.content.startswith(b"\xef\xbb\xbf")
    got = json.loads(r.content.decode("utf-8"))  # a str: a BOM would be refused
    assert got["choices"][0]["message"]["content"] == "ok"
