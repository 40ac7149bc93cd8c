"""Long CLI jobs draw a progress bar on a terminal and say nothing when piped
(``mixroute.progress``), shown with the real ``mixroute replay`` command."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from test_report import _config, _jsonl
from typer.testing import CliRunner

from mixroute.cli import app
from mixroute.progress import progress_batches

MIXROUTE = str(Path(sys.executable).with_name("mixroute"))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIXROUTE_")}
    return env | {"TERM": "xterm-256color", "COLUMNS": "100"}


def test_piped_replay_is_quiet(tmp_path: Path) -> None:
    cfg, data = _config(tmp_path), _jsonl(tmp_path)
    res = CliRunner().invoke(app, ["replay", str(data), "-c", str(cfg), "--json"])
    assert res.exit_code == 0, res.output
    assert "replaying" not in res.stderr and "\x1b[" not in res.stderr
    assert res.stdout.count("\n") == 1  # one JSON line, nothing else


def test_replay_on_a_terminal_draws_a_bar(tmp_path: Path) -> None:
    cfg, data = _config(tmp_path), _jsonl(tmp_path)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [MIXROUTE, "replay", str(data), "-c", str(cfg), "--json"],
            stdout=subprocess.DEVNULL,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            env=_env(),
        )
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(60) == 0
    finally:
        os.close(master)
    assert b"replaying" in seen


def test_eval_piped_is_quiet(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    rows = tmp_path / "labelled.jsonl"
    rows.write_text(
        "".join(
            f'{{"prompt": "{p}", "category": "{c}"}}\n'
            for p, c in [
                ("solve the equation 2x = 4", "math"),
                ("write a python function", "code"),
                ("hello there", "chat"),
            ]
            * 3
        ),
        "utf-8",
    )
    res = CliRunner().invoke(app, ["eval", str(rows), "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "classifying" not in res.stderr and "\x1b[" not in res.stderr


def test_progress_batches_keeps_order(capfd: pytest.CaptureFixture[str]) -> None:
    parts = progress_batches(lambda part: [x * 2 for x in part], range(10), "x", 4)
    assert parts == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]
    assert capfd.readouterr().err == ""  # not a terminal: no bar
