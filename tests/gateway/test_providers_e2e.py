"""Providers through the real gateway: Anthropic translation, the default config."""

from __future__ import annotations

import openai
from gateway_kit import build, in_process, make_config, serve, wait_rows

from fakes import FakeUpstream, StubClassifier
from mixroute.api.app import create_app
from mixroute.config import default_config_text, parse_config

MSG = [{"role": "user", "content": "hello"}]


def test_anthropic_model_whole_and_streamed(monkeypatch, upstreams, urls) -> None:
    monkeypatch.setenv("TEST_CLAUDE_KEY", "ak-secret")
    with FakeUpstream("claude") as claude:
        claude_cfg = {
            "provider": "anthropic",
            "base_url": f"http://127.0.0.1:{claude.port}",
            "api_key_env": "TEST_CLAUDE_KEY",
        }
        cfg, text = make_config(urls, models={"large": claude_cfg})
        with serve(build(cfg, text)) as s:
            client = openai.OpenAI(base_url=s.base_url, api_key="client-key")
            whole = client.chat.completions.create(model="large", messages=MSG)
            chunks = list(
                client.chat.completions.create(
                    model="large",
                    messages=MSG,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            rows = wait_rows(s.app, 2)
        sent = claude.received[0]
    assert whole.choices[0].message.content == "Answer from claude."
    text_out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text_out == "Answer from claude."
    assert {c.choices[0].index for c in chunks if c.choices} == {0}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert sent.path.endswith("/v1/messages")
    assert sent.headers.get("x-api-key") == "ak-secret"
    assert "authorization" not in sent.headers
    assert [(r["model"], r["input_tokens"], r["output_tokens"]) for r in rows] == [
        ("large", 11, 7),
        ("large", 11, 7),
    ]


async def test_default_config_without_upstreams_names_the_variables() -> None:
    config = parse_config(default_config_text(), env={})
    config = config.model_copy(
        update={"server": config.server.model_copy(update={"ledger_path": ":memory:"})}
    )
    app = create_app(config, classifier=StubClassifier(config.route_names))
    async with in_process(app) as client:
        r = await client.post(
            "/v1/chat/completions", json={"model": "auto", "messages": MSG}
        )
        c = await client.post("/v1/classify", json={"prompt": "solve 2x = 4"})
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert "MIXROUTE_LARGE_BASE_URL" in message
    # Keys are named as needed only where the endpoint wants one.
    assert "MIXROUTE_LARGE_API_KEY" in message
    assert message.index("(and ") < message.index("MIXROUTE_LARGE_API_KEY")
    assert "where the endpoint needs a key" in message
    assert c.status_code == 200 and c.json()["route"] == "math"
