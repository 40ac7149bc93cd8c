"""Two mixroute processes on one real redis-server share pins, budgets, cached
answers and open circuits, and keep answering while Redis is away."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml
from replica_helpers import MixrouteProcess, chat, config_dict, write_config

from fakes import FakeUpstream, Reply
from mixroute.tokens import count_message_tokens
from redis_server import RedisServer, unique_prefix

BUDGET_USD = 0.1
PRICE_PER_TOKEN = 1000 / 1_000_000  # every model: $1000 per million tokens


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
    redis: RedisServer,
    urls: dict[str, str],
) -> Iterator[tuple[MixrouteProcess, MixrouteProcess]]:
    work = tmp_path_factory.mktemp("replicas")
    procs = []
    prefix = unique_prefix()  # one namespace: the replicas share it
    for name in ("a", "b"):
        raw = config_dict(
            urls,
            work / f"{name}.sqlite",
            state={
                "backend": "redis",
                "key_prefix": prefix,
                "timeout_s": 0.3,
                "reprobe_s": 0.3,
            },
            cache={"enabled": True},
            policies={
                "budgets": [
                    {
                        "name": "team",
                        "scope": "route",
                        "match": "budgeted",
                        "limit_usd": BUDGET_USD,
                    }
                ],
            },
        )
        cfg = write_config(work / f"{name}.yaml", raw)
        env = {"MIXROUTE_REDIS_URL": redis.url}
        procs.append(MixrouteProcess(cfg, work / f"{name}.log", env))
    try:
        for p in procs:
            p.start()
        yield procs[0], procs[1]
    finally:
        for p in procs:
            p.stop()


def test_session_pinned_through_a_stays_pinned_through_b(
    replicas: tuple[MixrouteProcess, MixrouteProcess],
    upstreams: dict[str, FakeUpstream],
) -> None:
    a, b = replicas
    # Another conversation, begun on B, gets the route's first candidate.
    other = {"x-session-id": "sess-other"}
    assert chat(b.url, "hi", headers=other).headers["x-mixroute-model"] == "small"

    # On A the first turn's small fails, medium answers: the session pins medium.
    upstreams["small"].push(Reply("status", status=500))
    mine = {"x-session-id": "sess-pinned"}
    first = chat(a.url, "hi there", headers=mine)
    assert first.status_code == 200
    assert first.headers["x-mixroute-model"] == "medium"
    # The pin is written just after the answer is sent (with the outcome).
    time.sleep(0.5)

    # B sees the pin although small is fine again; the other session keeps small.
    for _ in range(2):
        later = chat(b.url, "and then?", headers=mine)
        assert later.status_code == 200
        assert later.headers["x-mixroute-model"] == "medium"
        assert "session" in later.headers["x-mixroute-rule"]
    assert chat(b.url, "more", headers=other).headers["x-mixroute-model"] == "small"


def test_budget_is_enforced_across_both_under_concurrent_load(
    replicas: tuple[MixrouteProcess, MixrouteProcess],
    upstreams: dict[str, FakeUpstream],
) -> None:
    a, b = replicas
    messages = [{"role": "user", "content": "spend this"}]
    prompt = count_message_tokens(messages)
    max_tokens = 30 - prompt
    # Each answer uses exactly what was reserved for it: $0.03 of the $0.10.
    cost = (prompt + max_tokens) * PRICE_PER_TOKEN
    fits = int(BUDGET_USD / cost)
    assert fits == 3
    small = upstreams["small"]
    small.push(*(Reply(usage=(prompt, max_tokens)) for _ in range(16)))

    def one(i: int) -> httpx.Response:
        target = (a, b)[i % 2]
        return chat(
            target.url, "spend this", model="auto:budgeted", max_tokens=max_tokens
        )

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(16)))
    finally:
        small.script.clear()

    ok = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code != 200]
    # Each replica alone would admit `fits` requests of its 8; sharing the
    # budget, both together admit `fits`.
    assert len(ok) == fits
    assert {r.headers["x-mixroute-model"] for r in ok} == {"small"}
    for r in refused:
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "budget_exceeded", r.text


def test_cache_entry_written_by_a_is_a_hit_on_b(
    replicas: tuple[MixrouteProcess, MixrouteProcess],
    upstreams: dict[str, FakeUpstream],
) -> None:
    a, b = replicas
    small = upstreams["small"]
    prompt = "What is the boiling point of water at sea level?"

    miss = chat(a.url, prompt, temperature=0)
    assert miss.status_code == 200 and miss.headers["x-mixroute-cache"] == "miss"
    calls = len(small.received)

    hit = chat(b.url, prompt, temperature=0)
    assert hit.status_code == 200 and hit.headers["x-mixroute-cache"] == "hit"
    assert hit.headers["x-mixroute-model"] == "small"
    assert hit.json()["choices"] == miss.json()["choices"]

    # The same answer, asked for as a stream, is replayed as SSE.
    streamed = chat(b.url, prompt, temperature=0, stream=True)
    assert streamed.headers["x-mixroute-cache"] == "hit"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [x for x in streamed.text.split("\n\n") if x.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert "Answer from small." in streamed.text
    assert len(small.received) == calls  # neither hit reached the upstream

    # A sampled request (temperature unset) is neither served nor stored.
    assert chat(b.url, prompt).headers["x-mixroute-cache"] == "miss"

    # The hit's one ledger row: the cached model, no cost, the cache flag.
    row = _ledger_row(b, hit.headers["x-request-id"])
    assert row == {"status": 200, "model": "small", "cost_usd": 0.0, "cached": 1}


def test_a_cut_stream_is_not_cached(
    replicas: tuple[MixrouteProcess, MixrouteProcess],
    upstreams: dict[str, FakeUpstream],
) -> None:
    a, b = replicas
    small = upstreams["small"]
    prompt = "Count slowly from one to ten."
    small.push(Reply("drop", chunks=4))
    cut = chat(a.url, prompt, temperature=0, stream=True)
    assert cut.headers["x-mixroute-cache"] == "miss"
    assert "upstream_stream_error" in cut.text and "[DONE]" not in cut.text

    calls = len(small.received)
    again = chat(b.url, prompt, temperature=0, stream=True)
    assert again.headers["x-mixroute-cache"] == "miss"
    assert again.text.rstrip().endswith("data: [DONE]")
    assert len(small.received) == calls + 1
    # That whole answer was stored: now A hits it.
    assert chat(a.url, prompt, temperature=0).headers["x-mixroute-cache"] == "hit"


def _ledger_row(proc: MixrouteProcess, request_id: str) -> dict[str, object]:
    raw = yaml.safe_load(proc.config.read_text("utf-8"))
    deadline = time.monotonic() + 3.0
    while True:
        with sqlite3.connect(raw["server"]["ledger_path"]) as db:
            rows = db.execute(
                "SELECT status, model, cost_usd, cached FROM usage "
                "WHERE request_id = ?",
                (request_id,),
            ).fetchall()
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(rows) == 1, rows
    status, model, cost, cached = rows[0]
    return {"status": status, "model": model, "cost_usd": cost, "cached": cached}


def test_open_circuit_on_a_is_seen_by_b(
    replicas: tuple[MixrouteProcess, MixrouteProcess],
    upstreams: dict[str, FakeUpstream],
) -> None:
    a, b = replicas
    medium = upstreams["medium"]
    medium.push(Reply("status", status=500), Reply("status", status=500))
    for i in range(2):
        r = chat(a.url, f"circuit {i}", model="medium")
        assert r.status_code == 200 and r.headers["x-mixroute-model"] == "large"

    deadline = time.monotonic() + 5.0
    healthy = ["medium"]
    while time.monotonic() < deadline and "medium" in healthy:
        healthy = httpx.get(b.url + "/readyz", timeout=2).json()["healthy_upstreams"]
        time.sleep(0.1)
    assert "medium" not in healthy, "B never saw the circuit A opened"

    calls = len(medium.received)
    r = chat(b.url, "circuit on b", model="medium")
    assert r.status_code == 200 and r.headers["x-mixroute-model"] == "large"
    assert len(medium.received) == calls  # B did not even try medium


def test_redis_outage_degrades_to_local_state_and_recovers(
    replicas: tuple[MixrouteProcess, MixrouteProcess],
    redis: RedisServer,
) -> None:
    a, b = replicas
    redis.stop()
    try:
        for i in range(6):
            r = chat((a, b)[i % 2].url, f"while redis is away {i}", temperature=0)
            assert r.status_code == 200, r.text
        for p in (a, b):
            p.wait_log("is unavailable, serving from local memory")
    finally:
        redis.start()

    deadline = time.monotonic() + 10.0
    back = False
    while time.monotonic() < deadline and not back:
        for p in (a, b):
            r = chat(p.url, "is redis back?", temperature=0)
            assert r.status_code == 200, r.text
        back = all("local fallback ended" in p.log() for p in (a, b))
        time.sleep(0.2)
    assert back, a.log()[-2000:] + b.log()[-2000:]
