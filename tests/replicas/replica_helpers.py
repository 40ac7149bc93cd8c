"""Real mixroute server processes on loopback, for replica, reload and stop tests.

``MixrouteProcess`` runs ``python -m mixroute.cli serve --config FILE --port P``
in a subprocess with its log in a file, waits for ``/healthz``, and stops it
with SIGTERM. ``write_config`` writes a small config whose three models
(small, medium, large) point at ``FakeUpstream`` servers from ``tests/fakes.py``.
The module is not called ``conftest`` so other folders' conftests never shadow it.
"""

from __future__ import annotations

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

_START_TIMEOUT_S = 30.0
MODELS = ("small", "medium", "large")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_dict(urls: dict[str, str], ledger: Path, **sections: Any) -> dict[str, Any]:
    """Models small/medium/large on ``urls``; routes chat, budgeted, code."""
    prices = {
        "small": (1000.0, 1000.0),
        "medium": (1000.0, 1000.0),
        "large": (1000.0, 1000.0),
    }
    models = []
    for name in MODELS:
        pin, pout = prices[name]
        models.append(
            {
                "name": name,
                "base_url": urls[name],
                "model": f"up-{name}",
                "api_key_env": f"TEST_{name.upper()}_KEY",
                "price": {"input_per_mtok": pin, "output_per_mtok": pout},
                "timeouts": {"connect": 1.0, "read": 5.0, "total": 10.0},
                "max_retries": 0,
                "circuit_breaker": {
                    "failures": 2 if name == "medium" else 50,
                    "window_s": 30,
                    "cooldown_s": 30,
                },
            }
        )
    raw: dict[str, Any] = {
        "version": 1,
        "models": models,
        "routes": [
            {"name": "chat", "candidates": ["small", "medium"], "utterances": ["hi"]},
            {"name": "budgeted", "candidates": ["small"], "utterances": ["spend"]},
            {"name": "code", "candidates": ["medium", "large"], "utterances": ["code"]},
        ],
        "classifier": {"backend": "tfidf", "head": None},
        "policies": {
            "default_model": "large",
            "fallbacks": {"medium": ["large"]},
            "feedback": {"path": ":memory:"},
        },
        "server": {"ledger_path": str(ledger), "reload_poll_s": 0.2},
        # Off unless a test turns it on: a key file left in the working folder
        # must not switch authentication on for these servers.
        "auth": {"mode": "off", "keys_path": str(ledger.parent / "keys.sqlite")},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False), "utf-8")
    return path


class MixrouteProcess:
    """One ``mixroute serve`` process on a free loopback port."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None):
        self.config = config
        self.log_path = log
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        for name in MODELS:
            self.env.setdefault(f"TEST_{name.upper()}_KEY", f"sk-test-{name}")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MixrouteProcess:
        args = [sys.executable, "-m", "mixroute.cli", "serve"]
        args += ["--config", str(self.config), "--port", str(self.port)]
        args += ["--host", "127.0.0.1"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mixroute exited at start:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mixroute did not start:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def wait_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until ``text`` appears in the log; the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the log:\n{self.log()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then wait; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(timeout=5)
        self.proc = None
        return code


def chat(
    base: str,
    content: str,
    *,
    model: str = "auto:chat",
    stream: bool = False,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    **extra: Any,
) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
        **extra,
    }
    return httpx.post(
        base + "/v1/chat/completions", json=body, headers=headers, timeout=timeout
    )
