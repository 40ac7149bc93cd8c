"""The garbage collector's settings in a serving process (``api/heap.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from replica_helpers import MixrouteProcess, chat, config_dict, write_config

SETTLED = re.compile(
    r"garbage collector: (\d+) start-up objects frozen, young "
    r"collections every (\d+) allocations"
)


def _probe(code: str) -> str:
    # A fresh interpreter: the test process's own collector stays as it is.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_settle_freezes_start_up_state_and_raises_the_young_threshold() -> None:
    out = _probe(
        "import gc; from mixroute.api import heap\n"
        "junk = [[i] for i in range(1000)]\n"
        "heap.settle(12345)\n"
        "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)"
    )
    assert out == "12345 True"


def test_zero_leaves_the_collector_alone() -> None:
    out = _probe(
        "import gc; from mixroute.api import heap\n"
        "before = gc.get_threshold()\n"
        "heap.settle(0)\n"
        "print(gc.get_threshold() == before, gc.get_freeze_count())"
    )
    assert out == "True 0"


@contextmanager
def _serving(
    tmp_path: Path, urls: dict[str, str], **server: Any
) -> Iterator[tuple[MixrouteProcess, dict[str, Any]]]:
    """``mixroute serve`` with ``server`` settings, settled once; its raw config."""
    raw = config_dict(urls, tmp_path / "usage.sqlite")
    raw["server"].update(server)
    proc = MixrouteProcess(
        write_config(tmp_path / "mixroute.yaml", raw), tmp_path / "log"
    )
    proc.start()
    try:
        proc.wait_log("garbage collector:")
        yield proc, raw
    finally:
        proc.stop()


def test_serve_settles_at_start_and_again_after_a_reload(
    tmp_path: Path, urls: dict[str, str]
) -> None:
    with _serving(tmp_path, urls, gc_young_threshold=40_000) as (proc, raw):
        log = proc.log()
        ((frozen, every),) = SETTLED.findall(log)
        assert int(frozen) > 10_000 and every == "40000"
        assert chat(proc.url, "hi").status_code == 200

        # A reload swaps the gateway; once the old one is closed the heap is
        # settled again with the new config's threshold.
        raw["server"]["gc_young_threshold"] = 30_000
        write_config(proc.config, raw)
        log = proc.wait_log("young collections every 30000 allocations", timeout=20)
        # Applied at once, so not reported as waiting for a restart.
        assert "next restart" not in log
        assert chat(proc.url, "hi again").status_code == 200

        # A listener setting does wait for one, and says which.
        raw["server"]["shutdown_timeout_s"] = 7
        write_config(proc.config, raw)
        log = proc.wait_log("take effect at the next restart", timeout=20)
        assert "server.shutdown_timeout_s setting(s) changed" in log


def test_zero_after_settling_gives_python_its_collector_back() -> None:
    # A reload to 0: what an earlier settle froze (the start-up gateway, which
    # is garbage once replaced) must be collectable again, at Python's pace.
    out = _probe(
        "import gc; from mixroute.api import heap\n"
        "before = gc.get_threshold()\n"
        "heap.settle(12345)\n"
        "heap.settle(0)\n"
        "print(gc.get_threshold() == before, gc.get_freeze_count())"
    )
    assert out == "True 0"


def test_a_reload_to_zero_restores_python_s_collector(
    tmp_path: Path, urls: dict[str, str]
) -> None:
    with _serving(tmp_path, urls) as (proc, raw):
        raw["server"]["gc_young_threshold"] = 0
        write_config(proc.config, raw)
        proc.wait_log("garbage collector: Python's settings restored", timeout=20)
        assert chat(proc.url, "hi").status_code == 200


@pytest.mark.parametrize("bad", [-1, "many", 2**31])
def test_threshold_must_be_a_count(bad: object, tmp_path: Path) -> None:
    from mixroute.config import parse_config
    from mixroute.errors import ConfigError

    with pytest.raises(ConfigError, match="gc_young_threshold"):
        parse_config(f"version: 1\nserver: {{gc_young_threshold: {bad}}}\n", env={})
