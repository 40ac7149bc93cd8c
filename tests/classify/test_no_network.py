"""The ONNX backend classifies without any outbound look-up or connection.

onnxruntime has been seen resolving a telemetry host shortly after loading a
model. Two checks, in a fresh process each:

- an audit hook records every Python-level ``socket.getaddrinfo`` /
  ``socket.connect`` / ``gethostbyname`` to a non-loopback host;
- where the test runs as root and ``unshare`` works, the process also runs
  in its own network namespace whose resolver points to a UDP listener on
  127.0.0.1:53 inside it, which records any DNS query, including ones made
  from native code that the audit hook cannot see.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, socket, sys, threading, time

LOOPBACK = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "")
events = []

def hook(event, args):
    if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
        host = args[0] if args else ""
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host not in LOOPBACK:
            events.append([event, host])
    elif event == "socket.connect":
        addr = args[1]
        host = addr[0] if isinstance(addr, tuple) else str(addr)
        if host not in LOOPBACK and not str(host).startswith("/"):
            events.append([event, str(host)])

queries = []
def dns_listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    while True:
        data, _ = s.recvfrom(4096)
        queries.append(data.hex())

if sys.argv[1] == "namespace":
    threading.Thread(target=dns_listener, daemon=True).start()
sys.addaudithook(hook)

from mixroute.classify import build_classifier
from mixroute.config import load_config

config = load_config(None)
config = config.model_copy(update={"classifier": config.classifier.model_copy(
    update={"backend": "onnx", "cache_dir": sys.argv[2]})})
clf = build_classifier(config)
c = clf.classify("Write a Python function that parses ISO dates.")
clf.embed(["hello world"])
time.sleep(float(sys.argv[3]))
print(json.dumps({"route": c.route, "backend": c.backend, "events": events,
                  "dns_queries": queries}))
"""


def _run(cmd: list[str], tmp_path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_audit_hook_sees_no_outbound_lookup(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = _run([sys.executable, str(probe), "plain", str(tmp_path), "1"], tmp_path)
    assert result["backend"] == "onnx"
    assert result["route"] == "code"
    assert result["events"] == []


def _namespace_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(
        ["unshare", "-n", "-m", "true"], capture_output=True, timeout=10
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _namespace_available(), reason="needs root and unshare -n -m")
def test_network_namespace_sees_no_dns_query(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = (
        f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && "
        f"exec {sys.executable} {probe} namespace {tmp_path} 3"
    )
    result = _run(["unshare", "-n", "-m", "sh", "-c", script], tmp_path)
    assert result["backend"] == "onnx"
    assert result["events"] == []
    assert result["dns_queries"] == []


@pytest.mark.skipif(not _namespace_available(), reason="needs root and unshare -n -m")
def test_namespace_listener_would_catch_a_lookup(tmp_path: Path) -> None:
    """The namespace check is live: a real look-up from native code is recorded."""
    code = (
        "import socket, threading, time, json\n"
        "q=[]\n"
        "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1',53))\n"
        "t=threading.Thread(target=lambda: q.append(s.recvfrom(4096)), daemon=True)\n"
        "t.start()\n"
        "try:\n    socket.getaddrinfo('telemetry.example.invalid', 443)\n"
        "except OSError:\n    pass\n"
        "time.sleep(0.2); print(json.dumps({'dns_queries': len(q)}))\n"
    )
    check = tmp_path / "check.py"
    check.write_text(code)
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    script = (
        f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && "
        f"exec {sys.executable} {check}"
    )
    result = _run(["unshare", "-n", "-m", "sh", "-c", script], tmp_path)
    assert result["dns_queries"] >= 1
