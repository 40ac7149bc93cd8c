"""The dashboard in headless Chromium: the real server over fake upstreams, a
scripted burst with the openai SDK, then the page must load without console
errors, fetch only from its own origin and show the ledger's numbers."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from obs_helpers import build_app, obs_config, serve

from fakes import FakeUpstream, Reply
from mixroute.api.gateway import Gateway

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _need_chromium() -> None:
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI installs it")


def _burst(base_url: str, fakes: dict[str, FakeUpstream]) -> None:
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    fakes["small"].push(Reply(kind="status", status=500))
    prompts = [
        ("auto:chat", "hello there"),  # small fails, falls back
        ("auto", "solve the integral of x"),
        ("auto", "write python code for a queue"),
        ("auto:code", "refactor this code"),
        ("auto:chat", "tell me a joke"),
        ("large", "a long essay please"),
        ("medium", "summarise this"),
    ]
    for model, text in prompts:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
    stream = client.chat.completions.create(
        model="auto:math",
        messages=[{"role": "user", "content": "solve 2x = 4"}],
        stream=True,
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )


def _ledger(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        n, cost, base = conn.execute(
            "SELECT count(*), sum(cost_usd), sum(baseline_cost_usd) FROM usage"
        ).fetchone()
        models = dict(
            conn.execute(
                "SELECT model, count(*) FROM usage WHERE model IS NOT NULL "
                "GROUP BY model"
            ).fetchall()
        )
    return {"n": n, "cost": cost, "baseline": base, "models": models}


def test_dashboard_in_chromium(
    tmp_path: Path, fakes: dict[str, FakeUpstream], urls: dict[str, str]
) -> None:
    _need_chromium()
    from playwright.sync_api import sync_playwright

    ledger_path = tmp_path / "ledger.sqlite"
    config = obs_config(
        urls,
        ledger_path,
        policies={
            "default_model": "large",
            "fallbacks": {"small": ["medium"]},
            "ab_tests": [
                {
                    "name": "math-small",
                    "route": "math",
                    "production": "medium",
                    "candidate": "small",
                    "weight": 50,
                }
            ],
            "budgets": [{"name": "daily", "scope": "global", "limit_usd": 10.0}],
        },
    )
    app = build_app(config)
    with serve(app) as url:
        _burst(f"{url}/v1", fakes)
        gw: Gateway = app.state.gateway
        # A streamed request's row is queued just after its client has read the
        # last chunk, so wait (bounded) for the server to queue all nine.
        deadline = time.monotonic() + 10.0
        while True:
            gw.ledger.flush()
            want = _ledger(ledger_path)
            if want["n"] >= 9 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert want["n"] == 9

        errors: list[str] = []
        requests: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on(
                    "console",
                    lambda m: errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("request", lambda r: requests.append(r.url))
                page.goto(f"{url}/dashboard")
                page.wait_for_selector("body[data-loaded='1']", timeout=10_000)
                shown = {
                    "n": int(page.get_attribute("#requests", "data-value") or -1),
                    "cost": float(page.get_attribute("#cost", "data-value") or -1),
                    "baseline": float(
                        page.get_attribute("#baseline", "data-value") or -1
                    ),
                    "text": page.inner_text("#requests"),
                }
                bars = page.eval_on_selector_all(
                    "#by-model .row",
                    "rows => rows.map(r => [r.dataset.name, +r.dataset.count])",
                )
                recent = page.locator("#recent tbody tr").count()
                states = page.locator("#upstreams tbody tr").all_inner_texts()
                arms = page.locator("#ab tbody tr").all_inner_texts()
                budgets = page.locator("#budgets tbody tr").all_inner_texts()
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
            finally:
                browser.close()

    assert errors == []
    assert all(u.startswith(url) for u in requests), requests
    assert shown["n"] == want["n"] and shown["text"] == str(want["n"])
    assert shown["cost"] == pytest.approx(want["cost"], rel=1e-9)
    assert shown["baseline"] == pytest.approx(want["baseline"], rel=1e-9)
    assert {m: n for m, n in bars if m != "-"} == want["models"]
    assert recent == want["n"]
    assert len(states) == 3 and all("closed" in s for s in states)
    assert len(arms) == 2 and all("math-small" in a for a in arms)
    assert len(budgets) == 1 and budgets[0].startswith("daily")
    assert shot.stat().st_size > 10_000
    if os.environ.get("MIXROUTE_DOCS_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copy(shot, DOCS / "dashboard.png")
