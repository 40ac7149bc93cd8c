"""Hot reload and graceful shutdown of a real ``mixroute serve`` process."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from replica_helpers import MixrouteProcess, chat, config_dict, write_config

from fakes import FakeUpstream, Reply

SHUTDOWN_S = 3.0


class Stream:
    """A streaming chat request read on a thread; its first bytes are awaited."""

    def __init__(self, url: str, content: str, model: str = "auto:chat") -> None:
        self.url = url
        self.body = {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "stream": True,
        }
        self.started = threading.Event()
        self.headers: dict[str, str] = {}
        self.text = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with httpx.stream(
                "POST", self.url + "/v1/chat/completions", json=self.body, timeout=20
            ) as r:
                self.headers = dict(r.headers)
                for piece in r.iter_text():
                    self.text += piece
                    self.started.set()
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()

    def join(self, timeout: float = 20.0) -> str:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream never ended"
        assert self.error is None, repr(self.error)
        return self.text


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, urls: dict[str, str]
) -> Iterator[tuple[MixrouteProcess, dict[str, Any]]]:
    """One process for the module's tests, in order; the last one stops it."""
    work = tmp_path_factory.mktemp("lifecycle")
    raw = config_dict(urls, work / "usage.sqlite")
    raw["server"]["shutdown_timeout_s"] = SHUTDOWN_S
    proc = MixrouteProcess(write_config(work / "mixroute.yaml", raw), work / "log")
    proc.start()
    try:
        yield proc, raw
    finally:
        proc.stop()


def _models(proc: MixrouteProcess) -> list[str]:
    data = httpx.get(proc.url + "/v1/models", timeout=5).json()["data"]
    return [m["id"] for m in data]


def test_changed_file_reloads_and_a_broken_one_is_rejected(
    server: tuple[MixrouteProcess, dict[str, Any]],
    upstreams: dict[str, FakeUpstream],
) -> None:
    proc, raw = server
    assert chat(proc.url, "hi").headers["x-mixroute-model"] == "small"
    assert "auto:poetry" not in _models(proc)

    # A stream in flight when the config changes finishes on the old config.
    upstreams["small"].push(Reply("stall", chunks=2, delay=1.5))
    inflight = Stream(proc.url, "tell me slowly")
    assert inflight.started.wait(10)

    raw["routes"][0]["candidates"] = ["medium", "small"]
    raw["routes"].append(
        {"name": "poetry", "candidates": ["large"], "utterances": ["a poem"]}
    )
    write_config(proc.config, raw)
    proc.wait_log("Config reloaded from")
    assert chat(proc.url, "hi").headers["x-mixroute-model"] == "medium"
    assert "auto:poetry" in _models(proc)
    r = chat(proc.url, "a poem please", model="auto:poetry")
    assert r.headers["x-mixroute-model"] == "large"

    text = inflight.join()
    assert inflight.headers["x-mixroute-model"] == "small"
    assert text.rstrip().endswith("data: [DONE]")

    # A broken file: one ERROR line with every problem; the old config serves.
    raw["server"]["classify_workers"] = 0
    raw["server"]["max_body_bytes"] = 1
    write_config(proc.config, raw)
    log = proc.wait_log("rejected, the previous config keeps serving")
    line = next(x for x in log.splitlines() if "rejected" in x)
    assert "ERROR" in line and "2 problem(s)" in line
    assert "classify_workers" in line and "max_body_bytes" in line
    assert chat(proc.url, "hi").headers["x-mixroute-model"] == "medium"
    assert "auto:poetry" in _models(proc)


def test_sighup_reloads(server: tuple[MixrouteProcess, dict[str, Any]]) -> None:
    proc, raw = server
    # The file is still the broken one: SIGHUP reads it again and rejects it.
    proc.signal(signal.SIGHUP)
    proc.wait_log("Config reload (SIGHUP) rejected")
    assert chat(proc.url, "hi").headers["x-mixroute-model"] == "medium"

    raw["server"]["classify_workers"] = 2
    raw["server"]["max_body_bytes"] = 65536
    raw["routes"][0]["candidates"] = ["large"]
    write_config(proc.config, raw)
    proc.signal(signal.SIGHUP)
    proc.wait_log("(SIGHUP): 3 models, 4 routes")
    assert chat(proc.url, "hi").headers["x-mixroute-model"] == "large"


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def test_sigterm_finishes_streams_up_to_the_deadline_and_flushes_the_ledger(
    server: tuple[MixrouteProcess, dict[str, Any]],
    upstreams: dict[str, FakeUpstream],
) -> None:
    proc, raw = server
    # One stream ends within the shutdown deadline, one would take longer.
    upstreams["large"].push(Reply("stall", chunks=2, delay=1.5))
    short = Stream(proc.url, "a slow answer")
    assert short.started.wait(10)
    upstreams["large"].push(Reply("stall", chunks=2, delay=30.0))
    long = Stream(proc.url, "a far too slow answer")
    assert long.started.wait(10)
    assert proc.proc is not None
    popen = proc.proc

    stopped = time.monotonic()
    proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not _refused(proc.port):
        time.sleep(0.05)
    assert _refused(proc.port), "still accepting connections after SIGTERM"
    assert popen.poll() is None  # still finishing the streams

    text = short.join()
    assert text.rstrip().endswith("data: [DONE]")
    assert json.loads(text.split("data: ")[1])["object"] == "chat.completion.chunk"
    popen.wait(timeout=SHUTDOWN_S + 5)
    took = time.monotonic() - stopped
    assert SHUTDOWN_S <= took < SHUTDOWN_S + 3
    proc.proc = None
    with pytest.raises(AssertionError, match="RemoteProtocolError"):
        long.join()  # cut at the deadline, without [DONE]
    assert "[DONE]" not in long.text

    ledger = Path(raw["server"]["ledger_path"])
    with sqlite3.connect(ledger) as db:
        rows = {
            rid: db.execute(
                "SELECT status, stream, model, error FROM usage WHERE request_id = ?",
                (rid,),
            ).fetchall()
            for rid in (short.headers["x-request-id"], long.headers["x-request-id"])
        }
    assert list(rows.values()) == [
        [(200, 1, "large", None)],
        [(503, 1, "large", "cancelled: the server stopped")],
    ]
