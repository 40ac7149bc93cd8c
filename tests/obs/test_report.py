"""Savings reports: ``mixroute replay --html`` and ``mixroute usage --html``
write one self-contained HTML file with matplotlib plots; it renders in
headless Chromium with no network and no console errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.report import ReportRow, cost_quality_curve
from mixroute.state.ledger import Ledger, UsageRow

CHROMIUM = "/usr/bin/chromium"
PROMPTS = [
    ("solve the equation 3x + 5 = 20 for x", True, True),
    ("integrate x squared from 0 to 1", False, True),
    ("write a python function that reverses a list", True, True),
    ("fix this python code that crashes on empty input", False, False),
    ("hello, how are you today?", True, True),
    ("tell me a short joke about cats", True, True),
]


def _config(tmp_path: Path) -> Path:
    raw = {
        "version": 1,
        "models": [
            {"name": "cheap", "price": {"input_per_mtok": 0.2, "output_per_mtok": 0.4}},
            {
                "name": "premium",
                "price": {"input_per_mtok": 5.0, "output_per_mtok": 15.0},
            },
        ],
        "routes": [
            {
                "name": "math",
                "candidates": ["cheap"],
                "utterances": ["solve the equation", "integrate x squared"],
            },
            {
                "name": "code",
                "candidates": ["cheap"],
                "utterances": ["write a python function", "fix this code"],
            },
            {
                "name": "chat",
                "candidates": ["cheap"],
                "utterances": ["hello how are you", "tell me a joke"],
            },
        ],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "premium"},
        "server": {"ledger_path": str(tmp_path / "ledger.sqlite")},
    }
    path = tmp_path / "mixroute.yaml"
    path.write_text(yaml.safe_dump(raw), "utf-8")
    return path


def _jsonl(tmp_path: Path, labelled: bool = True) -> Path:
    path = tmp_path / "traffic.jsonl"
    with path.open("w") as f:
        for n in range(4):
            for prompt, weak, strong in PROMPTS:
                row: dict[str, Any] = {"prompt": f"{prompt} ({n})"}
                if labelled:
                    row |= {"weak_correct": weak, "strong_correct": strong}
                f.write(json.dumps(row) + "\n")
    return path


def _self_contained(text: str) -> None:
    assert "<script" not in text.lower()
    # No URL but SVG's XML namespaces, which are names, not fetches.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls


def test_replay_html(tmp_path: Path) -> None:
    cfg, data = _config(tmp_path), _jsonl(tmp_path)
    out = tmp_path / "replay.html"
    runner = CliRunner()
    res = runner.invoke(
        app, ["replay", str(data), "-c", str(cfg), "--json", "--html", str(out)]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    text = out.read_text("utf-8")
    _self_contained(text)
    assert text.count("<svg") == 5  # route, model, cost, savings, cost-quality
    assert "Cost-quality curve" in text
    assert f"${summary['cost_usd']:.4f}" in text
    assert f"${summary['baseline_cost_usd']:.4f}" in text
    assert f"<b>{summary['requests']}</b>" in text
    _render_in_chromium(out, tmp_path / "report.png")


def test_usage_html_from_a_ledger(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    ledger.start()
    now = time.time() - 3600
    for i in range(30):
        model = "premium" if i % 3 == 0 else "cheap"
        cost = 0.002 if model == "premium" else 0.0001
        ledger.record(
            UsageRow(
                f"r{i}",
                now + 60 * i,
                "team-a",
                ["math", "chat"][i % 2],
                0.9,
                "route:confident",
                model,
                model,
                200,
                100,
                50,
                cost,
                0.002,
                20.0,
                None,
                False,
                None,
            )
        )
    ledger.record(
        UsageRow(
            "bad",
            now,
            None,
            None,
            None,
            None,
            None,
            "",
            404,
            0,
            0,
            0.0,
            0.0,
            1.0,
            None,
            False,
            "no model",
        )
    )
    ledger.close()
    out = tmp_path / "usage.html"
    res = CliRunner().invoke(app, ["usage", "-c", str(cfg), "--html", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text("utf-8")
    _self_contained(text)
    assert text.count("<svg") == 4 and "No quality labels" in text
    assert "(30 answered requests)" in text
    cost = 10 * 0.002 + 20 * 0.0001
    assert f"${cost:.4f}" in text and f"${30 * 0.002:.4f}" in text
    assert "time (UTC)" in text  # savings over time, not over file order


def test_missing_ledger_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        ["usage", "--ledger", str(tmp_path / "nope.sqlite"), "--html", "x.html"],
    )
    assert res.exit_code == 1 and "does not exist" in res.output


def test_without_matplotlib_the_error_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'matplotlib':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from mixroute.errors import MixrouteError\n"
        "from mixroute.report import ReportRow, render_html\n"
        "try:\n"
        "    render_html([ReportRow('a', 'm', 1.0, 2.0)], title='t',\n"
        "                baseline_model='m', source='s')\n"
        "except MixrouteError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "pip install 'mixroute[report]'" in out.stdout, out.stderr


def test_cost_quality_curve_ends() -> None:
    rows = [
        ReportRow(
            "r",
            "cheap",
            1.0,
            10.0,
            hard_probability=p,
            weak_correct=w,
            strong_correct=True,
        )
        for p, w in [(0.9, False), (0.8, False), (0.2, True), (0.1, True)]
    ]
    curve = cost_quality_curve(rows)
    assert curve is not None
    assert curve["routed"] == (0.1, 0.5)
    assert curve["premium"] == (1.0, 1.0)
    # Moving the two hardest prompts first fixes both of their answers.
    assert curve["sweep"][10] == (pytest.approx(0.55), 1.0)
    assert cost_quality_curve([ReportRow("r", "m", 1.0, 1.0)]) is None


def _render_in_chromium(page_path: Path, shot: Path) -> None:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it")
        return
    from playwright.sync_api import sync_playwright
    from test_dashboard import ARGS

    errors: list[str] = []
    fetched: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: fetched.append(r.url))
            page.goto(page_path.as_uri())
            assert page.locator("svg").count() == 5
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == [] and fetched == [page_path.as_uri()]
    assert shot.stat().st_size > 10_000
