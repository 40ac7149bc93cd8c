"""The benchmark report: target checks, summary sections, process probes."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.overhead import Run  # noqa: E402
from bench.peers import litellm_overhead  # noqa: E402
from bench.scaling import rss_mib  # noqa: E402

from bench import report  # noqa: E402


def _runs(added: dict[str, float], rps: dict[str, float]) -> list[Run]:
    runs = []
    for mode in ("whole", "stream"):
        for target in ("direct", *litellm_overhead.TARGETS):
            p50 = 1.0 + added.get(target, 0.0)
            runs.append(Run(target, mode, 1, 100, 0, 1.0, p50, p50 * 2, p50, p50 * 2))
            runs.append(
                Run(target, mode, 64, int(rps[target]), 0, 1.0, 5.0, 9.0, 5.0, 9.0)
            )
    return runs


def test_summary_checks_the_issue_targets() -> None:
    added = {"bare-proxy": 0.5, "mixroute-named": 1.0, "mixroute-auto": 3.0}
    added |= {"mixroute-auto-new": 2.5, "litellm": 16.0}
    rps = {"direct": 5000, "bare-proxy": 2000, "mixroute-named": 1200}
    rps |= {"mixroute-auto": 900, "mixroute-auto-new": 400, "litellm": 100}
    classify = {"mixroute-auto": 0.02, "mixroute-auto-new": 1.6}
    s = litellm_overhead.summarise(_runs(added, rps), classify)

    named = s["whole"]["targets_met"]["mixroute-named"]
    auto = s["whole"]["targets_met"]["mixroute-auto"]
    assert named == {
        "added_p50_le_eighth_of_litellm": True,
        "rps_c64_ge_10x_litellm": True,
        "rps_c64_ge_half_bare": True,
        "added_p50_le_1ms_plus_classification": True,  # nothing to classify
    }
    assert auto["added_p50_le_eighth_of_litellm"] is False  # 3 > 16 / 8
    assert auto["rps_c64_ge_half_bare"] is False  # 900 < 1000
    assert auto["added_p50_le_1ms_plus_classification"] is False  # 3 > 1.02
    new = s["whole"]["targets_met"]["mixroute-auto-new"]
    assert new["added_p50_le_eighth_of_litellm"] is False  # 2.5 > 2
    assert new["rps_c64_ge_10x_litellm"] is False  # 400 < 1000
    assert new["added_p50_le_1ms_plus_classification"] is True  # 2.5 <= 2.6
    assert s["stream"]["mixroute-named"]["rps_vs_litellm"] == pytest.approx(12.0)
    assert s["whole"]["mixroute-named"]["added_p50_vs_litellm"] == pytest.approx(1 / 16)


def test_report_writes_every_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    added = {"bare-proxy": 0.5, "mixroute-named": 1.0, "mixroute-auto": 1.5}
    added |= {"mixroute-auto-new": 2.0, "litellm": 20.0}
    rps = {"direct": 5000, "bare-proxy": 2000, "mixroute-named": 1500}
    rps |= {"mixroute-auto": 1100, "mixroute-auto-new": 600, "litellm": 100}
    (tmp_path / "peers_overhead.json").write_text(
        json.dumps(
            {
                "litellm_version": "9.9.9",
                "litellm_ready_seconds": 3.0,
                "litellm_non_loopback_connections": [],
                "classify_p50_ms": {"mixroute-auto-new": 1.2},
                "summary": litellm_overhead.summarise(
                    _runs(added, rps), {"mixroute-auto-new": 1.2}
                ),
            }
        )
    )
    (tmp_path / "scaling.json").write_text(
        json.dumps(
            {
                "curve": [
                    {"concurrency": 1, "model": "small", "rps": 500.0}
                    | {"p50_ms": 2.0, "p99_ms": 4.0, "errors": 0}
                ],
                "memory": [{"requests": 0, "rss_mib": 100.0}],
                "rss_growth_after_warmup_mib": 0.0,
            }
        )
    )

    text = report.summary()

    assert "## 1. Gateway overhead beside LiteLLM" in text
    assert "| litellm | 21.00 | 20.00 |" in text
    assert "| mixroute-auto-new | 3.00 | 2.00 |" in text
    assert "req/s ≥ 10× LiteLLM's: yes" in text
    # 2 ms added, 1.2 ms of it classification: within 1 ms plus that.
    assert "added p50 ≤ 1 ms + classification p50 (1.20 ms): yes" in text
    assert "## 2. Classification" in text  # present, with "skipped" or "not run"
    assert "| 1 | small | 500 | 2.00 | 4.00 | 0 |" in text


def test_rss_of_this_process_is_read() -> None:
    value = rss_mib(os.getpid())
    assert value is not None and value > 1.0


def test_loopback_connections_are_not_reported() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            peer, _ = server.accept()
            with peer:
                assert client.fileno() > 0
                assert litellm_overhead.non_loopback_peers(os.getpid()) == []
