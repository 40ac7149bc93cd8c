"""Logs: ``mixroute serve --log-format json`` writes one JSON object per line,
one access line per request with its fields, app lines apart; text stays text."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from fakes import FakeUpstream
from mixroute.obs import access_fields
from mixroute.obs.logging import JsonFormatter
from mixroute.state.ledger import UsageRow

MIXROUTE = str(Path(sys.executable).with_name("mixroute"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config_file(tmp_path: Path, url: str, **obs: Any) -> Path:
    raw = {
        "version": 1,
        "models": [
            {"name": "cheap", "base_url": url, "max_retries": 0,
             "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
            {"name": "premium", "base_url": url, "max_retries": 0,
             "price": {"input_per_mtok": 10.0, "output_per_mtok": 20.0}},
        ],
        "routes": [
            {"name": "math", "candidates": ["cheap"],
             "utterances": ["solve this equation", "integrate x squared"]},
            {"name": "chat", "candidates": ["cheap"],
             "utterances": ["hello how are you", "tell me a joke"]},
        ],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {"default_model": "premium"},
        "server": {"ledger_path": str(tmp_path / "ledger.sqlite"),
                   "reload_poll_s": 0},
        "auth": {"mode": "off"},
        "observability": obs,
    }  # fmt: skip
    path = tmp_path / "mixroute.yaml"
    path.write_text(yaml.safe_dump(raw), "utf-8")
    return path


def _run(cfg: Path, *args: str, tmp_path: Path) -> tuple[list[str], int]:
    port = _free_port()
    err = (tmp_path / "stderr.log").open("w+")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXROUTE_")}
    proc = subprocess.Popen(
        [MIXROUTE, "serve", "-c", str(cfg), "--port", str(port), *args],
        stdout=err,
        stderr=err,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        body = {"messages": [{"role": "user", "content": "solve this equation"}]}
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": "auto", **body})
        assert r.status_code == 200, r.text
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": "nope", **body})
        assert r.status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    with err:
        err.seek(0)
        lines = [line for line in err.read().splitlines() if line.strip()]
    return lines, code


def test_serve_json_logs(tmp_path: Path, fake_upstream: FakeUpstream) -> None:
    # The format comes from the config, the level from the CLI (over the config).
    cfg = _config_file(
        tmp_path, fake_upstream.base_url, log_format="json", log_level="warning"
    )
    lines, code = _run(cfg, "--log-level", "info", tmp_path=tmp_path)
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    records = [json.loads(line) for line in lines]  # every line is JSON
    access = [r for r in records if r["logger"] == "mixroute.access"]
    assert len(access) == 2  # one line per request, written once
    assert len(lines) == len(set(lines))
    ok, missing = access
    for field in ("request_id", "key", "route", "confidence", "rule", "model",
                  "fallbacks", "status", "input_tokens", "output_tokens",
                  "cost_usd", "latency_ms", "cache"):  # fmt: skip
        assert field in ok, field
    assert ok["status"] == 200 and ok["model"] == "cheap" and ok["route"] == "math"
    assert ok["fallbacks"] == 0 and ok["cache"] == "miss" and ok["cost_usd"] > 0
    assert missing["status"] == 404
    assert "solve this equation" not in "\n".join(lines)
    app = [r for r in records if r["logger"] != "mixroute.access"]
    assert any("serving" in r["message"] for r in app)
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)
    assert not any("color_message" in r for r in records)


def test_json_formatter_fields_and_exceptions() -> None:
    row = UsageRow("r1", 0.0, "key_7", "math", 0.91234567, "route:confident",
                   "cheap", "premium,cheap", 200, 3, 4, 0.5, 1.0, 12.0, None,
                   False, None, True)  # fmt: skip
    record = logging.makeLogRecord(
        {
            "name": "mixroute.access",
            "msg": "done %s",
            "args": ("r1",),
            "levelname": "INFO",
            **access_fields(row, 1, "team-a"),
        }
    )
    out = json.loads(JsonFormatter().format(record))
    assert out["message"] == "done r1"
    assert out["confidence"] == 0.9123 and out["cache"] == "hit"
    assert out["fallbacks"] == 1 and out["key"] == "team-a"
    assert out["key_id"] == "key_7"
    try:
        raise ValueError("boom")
    except ValueError:
        err = logging.makeLogRecord({"msg": "x", "exc_info": sys.exc_info()})
    assert "ValueError: boom" in json.loads(JsonFormatter().format(err))["exception"]
