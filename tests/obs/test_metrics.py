"""/metrics: the counters follow the ledger, labels stay bounded, no prompt
text, request id or key ever appears, and each app has its own registry."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from obs_helpers import build_app, in_process, obs_config
from prometheus_client.parser import text_string_to_metric_families

from fakes import FakeUpstream, Reply
from mixroute.api.gateway import Gateway
from mixroute.obs.metrics import Metrics, status_class
from mixroute.state.keys import KeyStore
from mixroute.state.ledger import UsageRow

CANARY = "CANARY-PROMPT-7f3a9c"
RID = "req-canary-5150"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(all_: dict[Any, float], name: str, **labels: str) -> float:
    return all_.get((name, frozenset(labels.items())), 0.0)


def total(all_: dict[Any, float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in all_.items() if n == name and want <= ls)


async def _chat(client: httpx.AsyncClient, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": CANARY}]}
    return await client.post("/v1/chat/completions", json={**body, **extra})


async def test_metrics_follow_the_ledger_and_leak_nothing(
    fakes: dict[str, FakeUpstream], urls: dict[str, str]
) -> None:
    policies = {"default_model": "large", "fallbacks": {"small": ["medium"]}}
    config = obs_config(urls, policies=policies)
    app = build_app(config)
    fakes["small"].push(Reply(kind="status", status=500))
    async with in_process(app) as client:
        r = await _chat(client, "small")  # falls back to medium
        assert r.status_code == 200, r.text
        for model in ("auto", "auto:math", "large", "small"):
            r = await client.post(
                "/v1/chat/completions",
                headers={"x-request-id": RID},
                json={"model": model, "stream": True,
                      "messages": [{"role": "user", "content": CANARY}]},
            )  # fmt: skip
            assert r.status_code == 200
        r = await _chat(client, "no-such-model")
        assert r.status_code == 404
        gw: Gateway = app.state.gateway
        gw.ledger.flush()
        rows = gw.ledger.rows()
        text = (await client.get("/metrics")).text

    assert CANARY not in text and RID not in text
    assert "req_" not in text  # no generated request id either
    m = samples(text)
    assert total(m, "mixroute_requests_total") == len(rows) == 6
    by: Counter[tuple[str, str, str]] = Counter(
        (r["route"] or "none", r["model"] or "none", status_class(r["status"]))
        for r in rows
    )
    for (route, model, status), n in by.items():
        got = value(m, "mixroute_requests_total", route=route, model=model,
                    status=status)  # fmt: skip
        assert got == n, (route, model, status)
    assert value(m, "mixroute_fallbacks_total", from_model="small",
                 to_model="medium") == 1  # fmt: skip
    errors = total(m, "mixroute_upstream_errors_total", model="small")
    assert errors == 1
    cost = total(m, "mixroute_cost_usd_total")
    assert abs(cost - sum(r["cost_usd"] for r in rows)) < 1e-12
    base = total(m, "mixroute_baseline_cost_usd_total")
    assert abs(base - sum(r["baseline_cost_usd"] for r in rows)) < 1e-12
    tokens_in = total(m, "mixroute_tokens_total", direction="input")
    assert tokens_in == sum(r["input_tokens"] for r in rows)
    assert total(m, "mixroute_tokens_total", key="anonymous") > 0
    streams = sum(1 for r in rows if r["stream"] and r["ttft_ms"] is not None)
    assert total(m, "mixroute_time_to_first_token_seconds_count") == streams == 4
    assert total(m, "mixroute_request_duration_seconds_count") == len(rows)
    assert total(m, "mixroute_classification_duration_seconds_count") >= 1
    for model in ("small", "medium", "large"):
        assert ("mixroute_circuit_state", frozenset({("model", model)})) in m
    assert value(m, "mixroute_in_flight_requests") == 0


async def test_in_flight_counts_requests_being_served(
    fakes: dict[str, FakeUpstream], urls: dict[str, str]
) -> None:
    app = build_app(obs_config(urls))
    fakes["small"].push(Reply(kind="answer", delay=1.0))
    async with in_process(app) as client:
        pending = asyncio.ensure_future(_chat(client, "small"))
        seen = 0.0
        for _ in range(100):  # bounded: up to 1 s
            m = samples((await client.get("/metrics")).text)
            seen = value(m, "mixroute_in_flight_requests")
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == 1
        assert (await pending).status_code == 200
        m = samples((await client.get("/metrics")).text)
    assert value(m, "mixroute_in_flight_requests") == 0


async def test_each_app_has_its_own_registry(urls: dict[str, str]) -> None:
    a, b = build_app(obs_config(urls)), build_app(obs_config(urls))
    async with in_process(a) as ca, in_process(b) as cb:
        assert (await _chat(ca, "small")).status_code == 200
        ma = samples((await ca.get("/metrics")).text)
        mb = samples((await cb.get("/metrics")).text)
    assert total(ma, "mixroute_requests_total") == 1
    assert total(mb, "mixroute_requests_total") == 0


async def test_open_circuit_reads_2(
    fakes: dict[str, FakeUpstream], urls: dict[str, str]
) -> None:
    app = build_app(obs_config(urls))
    fakes["small"].default = Reply(kind="status", status=503)
    async with in_process(app) as client:
        for _ in range(2):  # circuit_breaker.failures
            await _chat(client, "small")
        m = samples((await client.get("/metrics")).text)
    assert value(m, "mixroute_circuit_state", model="small") == 2.0
    assert value(m, "mixroute_circuit_state", model="medium") == 0.0
    # Each failed on small, then fell back (to the premium default).
    assert total(m, "mixroute_fallbacks_total", from_model="small") == 2
    assert total(m, "mixroute_upstream_errors_total", model="small") == 2


def _row(**over: Any) -> UsageRow:
    base: dict[str, Any] = dict(
        request_id="r", ts=0.0, key=None, route="math", confidence=0.9, rule="x",
        model="small", models_tried="small", status=200, input_tokens=1,
        output_tokens=1, cost_usd=0.0, baseline_cost_usd=0.0, latency_ms=1.0,
        ttft_ms=None, stream=False, error=None,
    )  # fmt: skip
    base.update(over)
    return UsageRow(**base)


def test_labels_are_bounded() -> None:
    m = Metrics(["math"], ["small"])
    m.observe(_row(route="What is 2+2? " * 5, model="gpt-secret-x"))
    m.observe(_row(key="sk-" + "a" * 80))  # not a key name: too long
    for i in range(100):
        m.observe(_row(key=f"team-{i}"))
    m.upstream_error("small", "Timeout reading <body>")
    text = m.render().decode()
    assert "What is" not in text and "gpt-secret" not in text and "sk-" not in text
    assert 'route="other"' in text and 'model="other"' in text
    keys = {
        s.labels["key"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "key" in s.labels
    }
    assert len(keys) <= 64 + 2 and "other" in keys  # + anonymous, other
    assert 'reason="other"' in text
    assert status_class(499) == "499" and status_class(502) == "5xx"


def test_histograms_count_each_request_once_in_cumulative_buckets() -> None:
    m = Metrics(["math"], ["small"])
    # 5 ms sits on a bound (le is inclusive); 7 s and 100 s fall past it.
    for ms in (5.0, 7_000.0, 100_000.0):
        m.observe(_row(latency_ms=ms, ttft_ms=ms / 10, stream=True))
    m.observe(_row(latency_ms=20.0))  # not a stream: no time to first token
    s = samples(m.render().decode())
    name = "mixroute_request_duration_seconds"
    labels = {"route": "math", "model": "small"}
    assert value(s, f"{name}_bucket", le="0.005", **labels) == 1
    assert value(s, f"{name}_bucket", le="0.025", **labels) == 2
    assert value(s, f"{name}_bucket", le="10.0", **labels) == 3
    assert value(s, f"{name}_bucket", le="60.0", **labels) == 3
    assert value(s, f"{name}_bucket", le="+Inf", **labels) == 4
    assert value(s, f"{name}_count", **labels) == 4
    assert value(s, f"{name}_sum", **labels) == pytest.approx(107.025)
    ttft = "mixroute_time_to_first_token_seconds"
    assert value(s, f"{ttft}_count", model="small") == 3
    # 0.5 ms, 0.7 s and 10 s (on the last bound).
    assert value(s, f"{ttft}_bucket", le="0.005", model="small") == 1
    assert value(s, f"{ttft}_bucket", le="1.0", model="small") == 2
    assert value(s, f"{ttft}_bucket", le="10.0", model="small") == 3
    assert value(s, "mixroute_requests_total", status="2xx", **labels) == 4


def test_classification_times_are_a_histogram_of_routed_requests() -> None:
    m = Metrics(["math"], ["small"])
    for ms in (0.4, 1.0, 30.0):  # 1 ms sits on a bound
        m.observe(_row(), classify_ms=ms)
    m.observe(_row())  # a named model: nothing classified
    s = samples(m.render().decode())
    name = "mixroute_classification_duration_seconds"
    assert value(s, f"{name}_bucket", le="0.0005") == 1
    assert value(s, f"{name}_bucket", le="0.001") == 2
    assert value(s, f"{name}_bucket", le="0.025") == 2
    assert value(s, f"{name}_bucket", le="0.05") == 3
    assert value(s, f"{name}_bucket", le="+Inf") == 3
    assert value(s, f"{name}_count") == 3
    assert value(s, f"{name}_sum") == pytest.approx(0.0314)


async def test_grafana_dashboard_uses_only_served_metrics(urls: dict[str, str]) -> None:
    path = Path(__file__).resolve().parents[2] / "deploy/grafana/mixroute.json"
    dash = json.loads(path.read_text("utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    names = [m for e in exprs for m in re.findall(r"mixroute_\w+", e)]
    used = {re.sub(r"_(total|bucket)$", "", m) for m in names}
    async with in_process(build_app(obs_config(urls))) as client:
        text = (await client.get("/metrics")).text
    helped = re.findall(r"^# HELP (mixroute_\w+)", text, flags=re.M)
    served = {re.sub(r"_total$", "", m) for m in helped}
    assert used and used <= served, used - served
    assert len(used) >= 12


async def test_guard_refusals_and_key_names(
    tmp_path: Path, urls: dict[str, str]
) -> None:
    auth = {"mode": "on", "keys_path": str(tmp_path / "keys.sqlite")}
    config = obs_config(urls, auth=auth)
    secret, record = KeyStore(config.auth.keys_path).create("team-a")
    app = build_app(config)
    async with in_process(app) as client:
        r = await _chat(client, "small")  # no client key
        assert r.status_code == 401
        r = await client.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {secret}"},
            json={"model": "small", "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 200, r.text
        gw: Gateway = app.state.gateway
        gw.ledger.flush()
        rows = gw.ledger.rows()
        text = (await client.get("/metrics")).text
        live = (await client.get("/dashboard/data")).json()
    m = samples(text)
    assert len(rows) == 2 and rows[0]["rule"] == "guard"
    assert value(m, "mixroute_requests_total", route="none", model="none",
                 status="4xx") == 1  # fmt: skip
    assert live["totals"]["requests"] == 2 and live["totals"]["errors"] == 1
    assert live["recent"][1]["rule"] == "guard"
    # Spend is labelled with the key's name, never its secret or its id.
    assert total(m, "mixroute_cost_usd_total", key="team-a") > 0
    assert secret not in text and record.key_id not in text


async def test_budget_remaining(urls: dict[str, str]) -> None:
    budgets = [
        {"name": "all", "scope": "global", "limit_usd": 5.0},
        {"name": "per-key", "scope": "key", "limit_usd": 1.0},
    ]
    app = build_app(obs_config(urls, policies={"default_model": "large",
                                               "budgets": budgets}))  # fmt: skip
    async with in_process(app) as client:
        assert (await _chat(client, "large")).status_code == 200
        gw: Gateway = app.state.gateway
        for _ in range(200):  # the spend is settled after the answer, off the path
            if not gw._policy_tasks:
                break
            await asyncio.sleep(0.01)
        gw.ledger.flush()
        spent = sum(r["cost_usd"] for r in gw.ledger.rows())
        m = samples((await client.get("/metrics")).text)
        live = (await client.get("/dashboard/data")).json()
    assert spent > 0
    left = value(m, "mixroute_budget_remaining_usd", budget="all")
    assert left == pytest.approx(5.0 - spent, abs=1e-6)
    assert live["budgets"] == {"all": pytest.approx(left, abs=1e-6)}
    assert not any(k[0] == "mixroute_budget_remaining_usd" and ("budget", "per-key")
                   in k[1] for k in m)  # fmt: skip
