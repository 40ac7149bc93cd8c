"""Capabilities, context windows and reasoning parameters."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from policy_helpers import classified, make_config, req

from mixroute.errors import ClientError
from mixroute.policy import Needs, PolicyEngine, PolicyRequest
from mixroute.policy.capabilities import reasoning_params

IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}


def test_needs_are_read_from_the_body() -> None:
    body = {
        "model": "auto",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]}
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_object"},
        "max_tokens": 50,
    }
    r = PolicyRequest.from_body(body, key_id="k")
    assert r.needs == Needs(vision=True, tools=True, json=True)
    assert r.max_tokens == 50 and r.prompt_tokens > 4 and r.text == "what?"


async def test_incapable_candidates_are_skipped(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for()
    # chat: local (chat only), small (vision), medium (no vision), then large.
    d = await engine.decide(classified("chat"), req(needs=Needs(vision=True)))
    assert d.candidates == ("small", "large")
    assert d.rule == "route:confident>capability:skip=local,medium"
    d = await engine.decide(classified("chat"), req(needs=Needs(tools=True)))
    assert d.model == "small" and "local" not in d.candidates


async def test_no_capable_candidate_is_a_client_error(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    routes = [
        {"name": "chat", "candidates": ["local"]},
        {"name": "math", "candidates": ["medium"]},
    ]
    cfg = make_config(routes=routes, default_model="medium")
    engine = engine_for(cfg)
    with pytest.raises(ClientError, match="vision") as info:
        await engine.decide(classified("chat"), req(needs=Needs(vision=True)))
    assert info.value.status == 400 and info.value.code == "no_capable_model"


async def test_small_window_means_trim_or_skip(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for()
    big = req(prompt_tokens=3500, max_tokens=1000)  # local's window is 4096
    # No messages to condense: the model cannot serve it.
    d = await engine.decide(classified("chat"), big)
    assert d.model == "small" and not d.context_trimmed
    strict = engine_for(make_config(context={"trim": False}))
    d = await strict.decide(classified("chat"), big)
    assert d.model == "small" and "local" not in d.candidates
    assert d.rule == "route:confident>capability:skip=local"


def test_reasoning_translated_per_provider() -> None:
    cfg = make_config()
    assert reasoning_params(cfg.model("small"), "high") == {"reasoning_effort": "high"}
    assert reasoning_params(cfg.model("small"), "off") == {}
    claude = cfg.model("claude")
    assert reasoning_params(claude, "medium", 8000) == {
        "thinking": {"type": "enabled", "budget_tokens": 4096}
    }
    # The budget stays below max_tokens; too small a max_tokens means none.
    assert reasoning_params(claude, "high", 2000)["thinking"]["budget_tokens"] == 1999
    assert reasoning_params(claude, "low", 1000) == {}


async def test_route_reasoning_setting_reaches_provider_params(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    routes = [
        {"name": "math", "candidates": ["small", "claude"], "reasoning_effort": "low"},
        {"name": "chat", "candidates": ["small"], "reasoning": True},
    ]
    engine = engine_for(make_config(routes=routes))
    d = await engine.decide(classified("math"), req(max_tokens=4000))
    assert engine.provider_params(d, "small") == {"reasoning_effort": "low"}
    assert engine.provider_params(d, "claude") == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }
    chat = await engine.decide(classified("chat"), req())
    assert engine.provider_params(chat, "small") == {"reasoning_effort": "medium"}


async def test_window_must_hold_the_latest_turns(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for()
    words = " ".join(f"w{i}" for i in range(2000))
    history = [
        {"role": "user", "content": words},
        {"role": "assistant", "content": words},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "you are welcome"},
        {"role": "user", "content": "short question"},
    ]
    body = {"model": "auto", "messages": history, "max_tokens": 100}
    r = PolicyRequest.from_body(body)
    d = await engine.decide(classified("chat"), r)
    assert d.model == "local" and d.context_trimmed  # old turns go, the rest fits
    one = {"model": "auto", "messages": history[:1], "max_tokens": 3500}
    d = await engine.decide(classified("chat"), PolicyRequest.from_body(one))
    assert d.model == "small" and "capability:skip=local" in d.rule
