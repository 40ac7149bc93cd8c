from __future__ import annotations

from conftest import build, in_process, make_config
from fakes import FakeUpstream


async def test_chat_named_model(upstreams: dict[str, FakeUpstream], urls) -> None:
    cfg, text = make_config(urls)
    app = build(cfg, text)
    async with in_process(app) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "small", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Answer from small."
    assert r.headers["x-mixroute-model"] == "small"
