"""The response cache on memory and on a real Redis: hits, misses, scope, bounds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from mixroute.cache import ResponseCache, build_response_cache, chat_scope
from mixroute.cache.base import CacheBackend
from mixroute.cache.memory import MemoryCacheBackend
from mixroute.cache.redis import RedisCacheBackend
from mixroute.config.schema import CacheConfig, StateConfig
from mixroute.state.redis import connect
from redis_server import RedisServer, unique_prefix

DIM = 32
MakeCache = Callable[..., ResponseCache]


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(v: np.ndarray, cosine: float, seed: int = 1) -> np.ndarray:
    """A unit vector at exactly ``cosine`` from unit vector ``v``."""
    other = np.random.default_rng(seed).standard_normal(DIM)
    other -= other.dot(v) * v
    other = unit(other)
    return unit(cosine * v + np.sqrt(1 - cosine**2) * other)


def word(i: int) -> str:
    """A digit-free name for entry ``i`` (digits must match on similarity hits)."""
    return chr(97 + i % 26) + chr(97 + i // 26)


def completion(content: str, finish: str | None = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "small",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def body(prompt: str, **params: Any) -> dict[str, Any]:
    params.setdefault("temperature", 0)
    system = params.pop("system", "Be brief.")
    return {
        "model": "auto",
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": prompt},
        ],
        **params,
    }


@pytest.fixture(params=["memory", "redis"])
async def make_cache(request: pytest.FixtureRequest) -> AsyncIterator[MakeCache]:
    made: list[ResponseCache] = []
    prefix = unique_prefix()
    server: RedisServer | None = None
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")

    def make(**overrides: Any) -> ResponseCache:
        config = CacheConfig(**{"enabled": True, **overrides})
        backend: CacheBackend
        if server is None:
            backend = MemoryCacheBackend(
                ttl_s=config.ttl_s,
                max_entries=config.max_entries,
                max_entries_per_scope=config.max_entries_per_scope,
            )
        else:
            backend = RedisCacheBackend(
                connect(server.url),
                prefix=prefix,
                ttl_s=config.ttl_s,
                max_entries=config.max_entries,
                max_entries_per_scope=config.max_entries_per_scope,
                close_client=True,
            )
        cache = ResponseCache(backend, config)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


async def test_exact_hit_ignores_whitespace(make_cache: MakeCache) -> None:
    cache = make_cache()
    scope, text = chat_scope("tenant-a", "small", body("What is 2+2?"))
    assert await cache.lookup(scope, text) is None
    assert await cache.store(scope, text, None, completion("4"))

    again, text2 = chat_scope("tenant-a", "small", body("  What is\n2+2? "))
    hit = await cache.lookup(again, text2)
    assert hit is not None
    assert hit.exact and hit.similarity == 1.0
    assert hit.response == completion("4")
    assert 0 <= hit.age_s < 5


async def test_semantic_hit_above_threshold_and_miss_below(
    make_cache: MakeCache,
) -> None:
    cache = make_cache(similarity=0.95, route_similarity={"code": 0.99, "chat": None})
    v = unit(np.random.default_rng(0).standard_normal(DIM))
    scope, text = chat_scope("t", "small", body("capital of France?"))
    assert await cache.store(scope, text, v, completion("Paris"))

    para, para_text = chat_scope("t", "small", body("France's capital city?"))
    hit = await cache.lookup(para, para_text, near(v, 0.97), route="math")
    assert hit is not None and not hit.exact
    assert hit.similarity == pytest.approx(0.97, abs=1e-4)
    assert hit.response["choices"][0]["message"]["content"] == "Paris"

    assert await cache.lookup(para, para_text, near(v, 0.93)) is None
    assert await cache.lookup(para, para_text, near(v, 0.97), route="code") is None
    assert await cache.lookup(para, para_text, v, route="chat") is None
    assert await cache.lookup(para, para_text, None) is None


async def test_best_of_several_matches_wins(make_cache: MakeCache) -> None:
    cache = make_cache(similarity=0.9)
    v = unit(np.random.default_rng(3).standard_normal(DIM))
    for i, cosine in enumerate([0.92, 0.99, 0.95]):
        scope, text = chat_scope("t", "m", body(f"prompt {word(i)}"))
        await cache.store(scope, text, near(v, cosine, seed=i), completion(f"a{i}"))
    scope, text = chat_scope("t", "m", body("new prompt"))
    hit = await cache.lookup(scope, text, v)
    assert hit is not None and hit.response["choices"][0]["message"]["content"] == "a1"


@pytest.mark.parametrize(
    ("tenant", "model", "changes"),
    [
        ("tenant-b", "small", {}),
        ("tenant-a", "large", {}),
        ("tenant-a", "small", {"temperature": 0.0001}),
        ("tenant-a", "small", {"max_tokens": 10}),
        ("tenant-a", "small", {"top_p": 0.5}),
        ("tenant-a", "small", {"stop": ["\n"]}),
        ("tenant-a", "small", {"seed": 7}),
        ("tenant-a", "small", {"response_format": {"type": "json_object"}}),
        ("tenant-a", "small", {"tools": [{"type": "function", "function": {}}]}),
        ("tenant-a", "small", {"tool_choice": "none"}),
        ("tenant-a", "small", {"system": "Be verbose."}),
        ("tenant-a", "small", {"n": 2}),
        ("tenant-a", "small", {"logit_bias": {"50256": -100}}),
        ("tenant-a", "small", {"some_future_param": True}),
    ],
)
async def test_scope_isolation(
    make_cache: MakeCache, tenant: str, model: str, changes: dict[str, Any]
) -> None:
    cache = make_cache(similarity=0.5, cache_sampled=True)
    v = unit(np.random.default_rng(5).standard_normal(DIM))
    scope, text = chat_scope("tenant-a", "small", body("hello"))
    assert await cache.store(scope, text, v, completion("hi"))

    other, other_text = chat_scope(tenant, model, body("hello", **changes))
    assert other.key != scope.key
    assert await cache.lookup(other, other_text, v) is None
    # The neutral fields do not split the scope.
    same, _ = chat_scope("tenant-a", "small", body("hello", stream=True, user="u1"))
    assert same.key == scope.key


async def test_sampled_requests_are_stored_only_when_allowed(
    make_cache: MakeCache,
) -> None:
    cache = make_cache()
    for params in ({"temperature": 0.7}, {"temperature": None}):
        scope, text = chat_scope("t", "m", body("tell a story", **params))
        assert scope.sampled
        assert not await cache.store(scope, text, None, completion("once"))
        assert await cache.lookup(scope, text) is None

    allowed = make_cache(cache_sampled=True)
    scope, text = chat_scope("t", "m", body("tell a story", temperature=0.7))
    assert await allowed.store(scope, text, None, completion("once"))
    assert await allowed.lookup(scope, text) is not None


async def test_only_complete_answers_are_stored(make_cache: MakeCache) -> None:
    cache = make_cache()
    scope, text = chat_scope("t", "m", body("q"))
    assert not await cache.store(scope, text, None, completion("cut"), complete=False)
    assert not await cache.store(scope, text, None, completion("cut", finish=None))
    blocked = completion("x", finish="content_filter")
    assert not await cache.store(scope, text, None, blocked)
    assert not await cache.store(scope, text, None, {"error": {"message": "no"}})
    assert await cache.lookup(scope, text) is None


async def test_non_text_last_message_matches_exactly_only(
    make_cache: MakeCache,
) -> None:
    cache = make_cache(similarity=0.5)
    v = unit(np.random.default_rng(9).standard_normal(DIM))
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}
    request = {
        "temperature": 0,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "what?"}, image]}
        ],
    }
    scope, text = chat_scope("t", "m", request)
    assert not scope.semantic
    assert await cache.store(scope, text, v, completion("a cat"))
    assert await cache.lookup(scope, text, v) is not None

    other_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,B"}}
    request["messages"][0]["content"][1] = other_image
    scope2, text2 = chat_scope("t", "m", request)
    assert await cache.lookup(scope2, text2, v) is None


async def test_entries_expire(make_cache: MakeCache) -> None:
    cache = make_cache(ttl_s=0.15, similarity=0.9)
    v = unit(np.random.default_rng(2).standard_normal(DIM))
    scope, text = chat_scope("t", "m", body("short lived"))
    await cache.store(scope, text, v, completion("yes"))
    assert await cache.lookup(scope, text) is not None

    await asyncio.sleep(0.2)
    assert await cache.lookup(scope, text) is None
    assert await cache.lookup(scope, "other words", v) is None


async def test_least_recently_used_is_evicted(make_cache: MakeCache) -> None:
    cache = make_cache(max_entries=3)
    entries = [chat_scope(f"tenant{i}", "m", body(f"q{i}")) for i in range(4)]
    for i, (scope, text) in enumerate(entries[:3]):
        await cache.store(scope, text, None, completion(f"a{i}"))
    assert await cache.lookup(*entries[0]) is not None  # now most recently used

    await cache.store(*entries[3], None, completion("a3"))
    assert await cache.lookup(*entries[1]) is None
    for i in (0, 2, 3):
        assert await cache.lookup(*entries[i]) is not None


async def test_scope_bound_evicts_within_the_scope(make_cache: MakeCache) -> None:
    cache = make_cache(max_entries_per_scope=2, similarity=0.999)
    rng = np.random.default_rng(11)
    vectors = [unit(rng.standard_normal(DIM)) for _ in range(3)]
    scopes = [chat_scope("t", "m", body(f"q{word(i)}")) for i in range(3)]
    elsewhere = chat_scope("t2", "m", body("q"))
    await cache.store(*elsewhere, None, completion("kept"))
    for i, (scope, text) in enumerate(scopes):
        await cache.store(scope, text, vectors[i], completion(f"a{i}"))

    probe, probe_text = chat_scope("t", "m", body("unrelated"))
    assert await cache.lookup(probe, probe_text, vectors[0]) is None
    for i in (1, 2):
        hit = await cache.lookup(probe, probe_text, vectors[i])
        assert hit is not None
        assert hit.response["choices"][0]["message"]["content"] == f"a{i}"
    assert await cache.lookup(*elsewhere) is not None


async def test_many_entries_each_found_by_its_own_embedding(
    make_cache: MakeCache,
) -> None:
    cache = make_cache(max_entries_per_scope=20, similarity=0.999)
    rng = np.random.default_rng(4)
    vectors = [unit(rng.standard_normal(DIM)) for _ in range(40)]
    for i, v in enumerate(vectors):
        scope, text = chat_scope("t", "m", body(f"question {word(i)}"))
        await cache.store(scope, text, v, completion(f"answer {i}"))

    probe, probe_text = chat_scope("t", "m", body("never stored"))
    for i, v in enumerate(vectors):
        hit = await cache.lookup(probe, probe_text, v)
        if i < 20:
            assert hit is None
        else:
            assert hit is not None
            assert hit.response["choices"][0]["message"]["content"] == f"answer {i}"


async def test_no_cross_tenant_hits_under_attack(make_cache: MakeCache) -> None:
    cache = make_cache(similarity=0.0)
    rng = np.random.default_rng(8)
    prompts = [f"secret question {i}" for i in range(10)]
    vectors = [unit(rng.standard_normal(DIM)) for _ in prompts]
    for i, prompt in enumerate(prompts):
        scope, text = chat_scope("victim", "m", body(prompt))
        await cache.store(scope, text, vectors[i], completion(f"victim answer {i}"))

    hits = 0
    for attacker in ("attacker", "victim ", "Victim", ""):
        for i, prompt in enumerate(prompts):
            scope, text = chat_scope(attacker, "m", body(prompt))
            for v in (vectors[i], None):
                hits += await cache.lookup(scope, text, v) is not None
    assert hits == 0
    scope, text = chat_scope("victim", "m", body(prompts[0]))
    assert await cache.lookup(scope, text) is not None


async def test_disabled_cache_neither_stores_nor_hits(make_cache: MakeCache) -> None:
    cache = make_cache(enabled=False)
    scope, text = chat_scope("t", "m", body("q"))
    assert not await cache.store(scope, text, None, completion("a"))
    assert await cache.lookup(scope, text) is None


async def test_redis_entry_written_by_one_replica_hits_on_another(
    redis_server: RedisServer,
) -> None:
    state = StateConfig(
        backend="redis", redis_url=redis_server.url, key_prefix=unique_prefix()
    )
    config = CacheConfig(enabled=True, similarity=0.9)
    a = build_response_cache(config, state, env={})
    b = build_response_cache(config, state, env={})
    try:
        v = unit(np.random.default_rng(6).standard_normal(DIM))
        scope, text = chat_scope("t", "m", body("shared question"))
        # b caches the scope's (empty then one-row) matrix before a writes more.
        assert await b.lookup(scope, text, v) is None
        assert await a.store(scope, text, v, completion("shared answer"))
        assert (await b.lookup(scope, text, v)) is not None

        w = unit(np.random.default_rng(7).standard_normal(DIM))
        scope2, text2 = chat_scope("t", "m", body("second question"))
        assert await a.store(scope2, text2, w, completion("second"))
        hit = await b.lookup(scope2, "a paraphrase", near(w, 0.95))
        assert hit is not None and not hit.exact
        assert hit.response["choices"][0]["message"]["content"] == "second"
    finally:
        await a.close()
        await b.close()


async def test_redis_outage_is_a_miss_with_one_warning(
    make_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server()
    state = StateConfig(backend="redis", redis_url=server.url, timeout_s=0.2)
    cache = build_response_cache(CacheConfig(enabled=True), state, env={})
    try:
        scope, text = chat_scope("t", "m", body("q"))
        assert await cache.store(scope, text, None, completion("a"))
        server.stop()
        caplog.set_level(logging.INFO, logger="mixroute.cache")
        for _ in range(5):
            assert await cache.lookup(scope, text) is None
            assert not await cache.store(scope, text, None, completion("a"))
        assert [r.levelno for r in caplog.records] == [logging.WARNING]

        server.start()
        assert await cache.store(scope, text, None, completion("b"))
        hit = await cache.lookup(scope, text)
        assert hit is not None
        assert hit.response["choices"][0]["message"]["content"] == "b"
        assert caplog.records[-1].levelno == logging.INFO
    finally:
        await cache.close()


async def test_similar_texts_must_agree_on_numbers(make_cache: MakeCache) -> None:
    cache = make_cache(similarity=0.9)
    v = unit(np.random.default_rng(12).standard_normal(DIM))
    scope, text = chat_scope("t", "m", body("What is 17 times 23?"))
    await cache.store(scope, text, v, completion("391"))
    other, other_text = chat_scope("t", "m", body("What is 17 times 24?"))
    assert await cache.lookup(other, other_text, v) is None

    # A lesser match that agrees on the numbers is still found.
    close, close_text = chat_scope("t", "m", body("Compute 17 times 24."))
    await cache.store(close, close_text, near(v, 0.95), completion("408"))
    hit = await cache.lookup(other, other_text, v)
    assert hit is not None
    assert hit.response["choices"][0]["message"]["content"] == "408"
    assert hit.similarity == pytest.approx(0.95, abs=1e-4)


async def test_oversized_answers_are_not_stored(make_cache: MakeCache) -> None:
    cache = make_cache()
    scope, text = chat_scope("t", "m", body("write a lot"))
    assert not await cache.store(scope, text, None, completion("x" * (1 << 20)))
    assert await cache.lookup(scope, text) is None
