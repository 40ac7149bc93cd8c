"""Policies end to end: real requests through the gateway to loopback fakes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest
import yaml
from starlette.applications import Starlette

from fakes import FakeUpstream, Reply, StubClassifier
from mixroute.api.app import build_gateway, create_app
from mixroute.api.gateway import Gateway
from mixroute.config import parse_config
from mixroute.policy import FakeClock, MemoryPolicyStore, PolicyEngine
from mixroute.upstream.pool import RetryPolicy
from servers import in_process, serve_url

CHAT = "/v1/chat/completions"
FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.02, retry_after_cap_s=0.1)
PRICES = {"small": (0.1, 0.2), "medium": (1.0, 2.0), "large": (10.0, 20.0)}


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    ups = {n: FakeUpstream(n).start() for n in PRICES}
    try:
        yield ups
    finally:
        for f in ups.values():
            f.stop()


def _config(fakes: dict[str, FakeUpstream], **policies: Any) -> Any:
    models: list[dict[str, Any]] = []
    for name, (pin, pout) in PRICES.items():
        models.append(
            {
                "name": name,
                "base_url": fakes[name].base_url,
                "model": f"up-{name}",
                "price": {"input_per_mtok": pin, "output_per_mtok": pout},
                "max_retries": 0,
                "quality": {"small": 0.5, "medium": 0.7, "large": 0.9}[name],
            }
        )
    # A candidate model for A/B tests, served by the medium fake.
    models.append(dict(models[1], name="medium-next", model="up-medium-next"))
    routes = policies.pop("routes", None) or [
        {
            "name": "math",
            "candidates": ["small", "medium", "large"],
            "utterances": ["solve"],
        },
        {"name": "chat", "candidates": ["small", "medium"], "utterances": ["hi"]},
    ]
    for r in routes:
        r.setdefault("utterances", [r["name"]])
    raw = {
        "version": 1,
        "models": models,
        "routes": routes,
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "large", **policies},
        "server": {"ledger_path": ":memory:"},
    }
    return parse_config(yaml.safe_dump(raw), env={})


def _app(config: Any, clock: FakeClock) -> tuple[Starlette, Gateway, PolicyEngine]:
    engine = PolicyEngine(config, MemoryPolicyStore(clock), clock)
    gw = build_gateway(
        config, classifier=StubClassifier(("math", "chat")), retry=FAST, engine=engine
    )
    return create_app(config, gateway=gw), gw, engine


async def _recorded(gw: Gateway) -> None:
    """Wait until the outcomes of finished requests reached the engine."""
    while gw._policy_tasks:
        await asyncio.gather(*list(gw._policy_tasks))


def _chat(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **kw}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def test_rule_header_and_cost_quality(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    # The stub classifier gives "solve" prompts hard_probability 0.2.
    app, _, _ = _app(_config(fakes, cost_quality=0.5), clock)
    async with in_process(app) as c:
        r = await c.post(CHAT, json=_chat("solve x + 1 = 2"))
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "small"
    assert r.headers["x-mixroute-rule"] == "route:confident>cost-quality:p=0.20"
    assert fakes["small"].received[-1].body["model"] == "up-small"


async def test_budget_for_two_admits_two_of_ten(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    # Worst case per request on "large": prompt ≤ 11 tokens and max_tokens 7
    # at 10/20 USD per Mtok ≈ 0.00025; the fake reports 11 + 7 tokens, so the
    # settled cost never frees room for a third request.
    budget = {"name": "daily", "scope": "key", "limit_usd": 0.0005, "step_down_at": 1.0}
    app, gw, _ = _app(_config(fakes, budgets=[budget]), clock)
    async with in_process(app) as c:
        body = {
            "model": "large",
            "max_tokens": 7,
            "messages": [{"role": "user", "content": "hi"}],
        }
        results = await asyncio.gather(*(c.post(CHAT, json=body) for _ in range(10)))
        await _recorded(gw)
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 200] + [429] * 8
    refused = next(r for r in results if r.status_code == 429)
    err = refused.json()["error"]
    assert err["code"] == "budget_exceeded" and '"daily"' in err["message"]
    assert len(fakes["large"].received) == 2


async def test_session_pin_failover_and_health(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    health = {"min_samples": 2, "alpha": 0.5}
    cfg = _config(fakes, cost_quality=0.5, health=health)
    app, gw, _ = _app(cfg, clock)
    session = {"x-session-id": "conv-1"}
    async with in_process(app) as c:
        first = await c.post(CHAT, json=_chat("solve it"), headers=session)
        await _recorded(gw)
        assert first.headers["x-mixroute-model"] == "small"
        # A chat prompt of low confidence would go to "large"; the pin holds.
        second = await c.post(CHAT, json=_chat("and then?"), headers=session)
        assert second.headers["x-mixroute-model"] == "small"
        assert second.headers["x-mixroute-rule"].endswith("session:pinned")
        await _recorded(gw)
        # The pinned model fails: the answer falls back (to the default model
        # of this unsure prompt) and the pin moves there, once, for good.
        fakes["small"].push(Reply("status", status=500))
        third = await c.post(CHAT, json=_chat("more?"), headers=session)
        await _recorded(gw)
        assert third.status_code == 200
        assert third.headers["x-mixroute-model"] == "large"
        assert third.headers["x-mixroute-fallbacks"] == "1"
        fourth = await c.post(CHAT, json=_chat("solve again"), headers=session)
        assert fourth.headers["x-mixroute-model"] == "large"
        await _recorded(gw)
        # A second failure (error EWMA 0.75) makes "small" unhealthy: it is
        # skipped before anything is sent to it.
        fakes["small"].push(Reply("status", status=500))
        await c.post(CHAT, json=_chat("solve y"))
        await _recorded(gw)
        sent_before = len(fakes["small"].received)
        skip = await c.post(CHAT, json=_chat("solve z"))
        assert skip.headers["x-mixroute-model"] == "medium"
        assert skip.headers["x-mixroute-fallbacks"] == "0"
        assert "health:skip=small" in skip.headers["x-mixroute-rule"]
        assert len(fakes["small"].received) == sent_before
        # After the cool-down one probe goes out; its success brings it back.
        clock.advance(31)
        probe = await c.post(CHAT, json=_chat("solve w"))
        assert probe.headers["x-mixroute-model"] == "small"
        await _recorded(gw)
        back = await c.post(CHAT, json=_chat("solve v"))
        assert back.headers["x-mixroute-model"] == "small"


async def test_ab_split_halts_on_candidate_errors(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    ab = {
        "name": "next",
        "route": "math",
        "production": "medium",
        "candidate": "medium-next",
        "weight": 100,
        "halt": {"max_error_rate": 0.4, "min_samples": 2},
    }
    routes = [
        {"name": "math", "candidates": ["medium", "large"]},
        {"name": "chat", "candidates": ["small"]},
    ]
    app, gw, engine = _app(_config(fakes, ab_tests=[ab], routes=routes), clock)
    async with in_process(app) as c:
        ok = await c.post(CHAT, json=_chat("solve a", user="u1"))
        assert ok.headers["x-mixroute-rule"] == "route:confident>ab:next:candidate"
        assert fakes["medium"].received[-1].body["model"] == "up-medium-next"
        await _recorded(gw)
        fakes["medium"].push(Reply("status", status=500))
        failed = await c.post(CHAT, json=_chat("solve b", user="u1"))
        assert failed.headers["x-mixroute-fallbacks"] == "1"
        await _recorded(gw)
        stats = await engine.stats()
        assert stats["next"]["arms"]["candidate"]["n"] == 2
        assert stats["next"]["halted"] is not None
        after = await c.post(CHAT, json=_chat("solve c", user="u1"))
        assert after.headers["x-mixroute-rule"] == "route:confident>ab:next:production"
        assert fakes["medium"].received[-1].body["model"] == "up-medium"


async def test_feedback_steers_a_user_and_is_scoped(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    prefs = {"min_ratings": 2, "max_cost_factor": 10}
    fb = {"refresh_s": 0}  # learned scores refresh before every decision
    app, gw, _ = _app(_config(fakes, preferences=prefs, feedback=fb), clock)
    async with in_process(app) as c:
        ids = []
        for i in range(2):
            r = await c.post(
                CHAT,
                json=_chat(f"solve {i}", user="alice"),
                headers={"x-request-id": f"alice-{i}"},
            )
            assert r.headers["x-mixroute-model"] == "small"
            ids.append(r.headers["x-request-id"])
        await _recorded(gw)
        for rid in ids:
            fb = await c.post(
                "/v1/feedback", json={"request_id": rid, "rating": "down"}
            )
            assert fb.status_code == 200 and fb.json()["ok"] is True
        missing = await c.post("/v1/feedback", json={"request_id": "nope", "rating": 1})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "request_not_found"
        bad = await c.post("/v1/feedback", json={"request_id": ids[0], "rating": 7})
        assert bad.status_code == 400
        steered = await c.post(CHAT, json=_chat("solve 3", user="alice"))
        assert steered.headers["x-mixroute-model"] == "medium"
        assert steered.headers["x-mixroute-rule"].endswith("pref:avoid=small")
        bob = await c.post(CHAT, json=_chat("solve 3", user="bob"))
        assert bob.headers["x-mixroute-model"] == "small"


async def test_context_trim_and_reasoning_params(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    routes = [
        {"name": "math", "candidates": ["small", "large"], "reasoning_effort": "high"},
        {"name": "chat", "candidates": ["small"]},
    ]
    cfg = _config(fakes, routes=routes)
    raw = cfg.model_dump()
    raw["models"][0]["context_window"] = 600  # small
    cfg = type(cfg).model_validate(raw)
    app, _, _ = _app(cfg, clock)
    words = " ".join(f"w{i}" for i in range(300))
    history = []
    for i in range(4):
        history += [
            {"role": "user", "content": f"solve {i} {words}"},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    history.append({"role": "user", "content": "solve the last one"})
    async with in_process(app) as c:
        r = await c.post(
            CHAT, json={"model": "auto", "messages": history, "max_tokens": 50}
        )
    assert r.status_code == 200
    assert r.headers["x-mixroute-model"] == "small"
    assert r.headers["x-mixroute-context"] == "trimmed"
    sent = fakes["small"].received[-1].body
    assert sent["reasoning_effort"] == "high"
    assert len(sent["messages"]) < len(history)
    assert sent["messages"][-1]["content"] == "solve the last one"


@contextmanager
def _serve(app: Starlette) -> Iterator[str]:
    with serve_url(app) as origin:
        yield f"{origin}/v1"


def test_openai_sdk_sees_budget_refusal_and_rule(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    budget = {
        "name": "tiny",
        "scope": "global",
        "limit_usd": 0.0003,
        "step_down_at": 1.0,
    }
    app, _, _ = _app(_config(fakes, budgets=[budget]), clock)
    with _serve(app) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        messages: Any = [{"role": "user", "content": "hi"}]
        raw = client.chat.completions.with_raw_response.create(
            model="large", messages=messages, max_tokens=7
        )
        assert raw.headers["x-mixroute-rule"] == "explicit:model"
        assert raw.parse().choices[0].message.content == "Answer from large."
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(
                model="large", messages=messages, max_tokens=7
            )
        assert info.value.code == "budget_exceeded"


async def test_streamed_answers_carry_the_rule_and_feed_the_pin(
    fakes: dict[str, FakeUpstream], clock: FakeClock
) -> None:
    routes = [
        {"name": "math", "candidates": ["small", "large"], "reasoning_effort": "low"},
        {"name": "chat", "candidates": ["medium"]},
    ]
    app, gw, _ = _app(_config(fakes, routes=routes), clock)
    session = {"x-session-id": "stream-1"}
    async with in_process(app) as c:
        async with c.stream(
            "POST", CHAT, json=_chat("solve q", stream=True), headers=session
        ) as r:
            text = "".join([chunk async for chunk in r.aiter_text()])
        assert r.headers["x-mixroute-rule"] == "route:confident"
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        content = "".join(
            (json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for e in events[:-1]
        )
        assert content == "Answer from small."
        assert fakes["small"].received[-1].body["reasoning_effort"] == "low"
        await _recorded(gw)
        again = await c.post(CHAT, json=_chat("chat now"), headers=session)
        assert again.headers["x-mixroute-model"] == "small"
        assert again.headers["x-mixroute-rule"].endswith("session:pinned")
