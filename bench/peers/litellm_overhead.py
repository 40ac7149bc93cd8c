"""Gateway overhead beside the LiteLLM proxy, every target in the same run.

    python -m bench.peers.litellm_overhead [--n1 N] [--n64 N]

Six targets on loopback against one fast fake upstream (bench/overhead.py's,
in its own process): ``direct``, ``bare-proxy`` (bench/bare_proxy.py),
``mixroute-named`` (classification off), ``mixroute-auto`` (on, one prompt
repeated, so the classifier's cache answers after the first request),
``mixroute-auto-new`` (on, every prompt new to the gateway: one of the shipped
demo prompts plus a request number, so the classifier runs every time) and
``litellm`` (``litellm[proxy]``, pinned, in ``.bench-venv/litellm``, one
worker, telemetry and the remote cost-map fetch off, no database). The load
generator and the interleaved rounds are bench/overhead.py's, so the ratios
are taken under the same machine load. Whole answers and streams (time to
first token); added latency p50/p99 at concurrency 1 and requests/s at
concurrency 64, as ratios to direct and to LiteLLM. Writes
``bench/results/peers_overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import overhead as ov
from bench.peers import venv

LITELLM = "litellm[proxy]==1.106.12"
RESULTS = ov.ROOT / "bench" / "results" / "peers_overhead.json"
STARTED = [0.0]  # when the servers were spawned (for LiteLLM's start-up time)
TARGETS = (
    "bare-proxy",
    "mixroute-named",
    "mixroute-auto",
    "mixroute-auto-new",
    "litellm",
)

# LiteLLM reads these at import: no telemetry, the bundled cost map instead of
# fetching one, no database, quiet logs (mixroute's access log is off too).
LITELLM_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "DISABLE_ADMIN_UI": "True",
    "NO_DOCS": "True",
}


def litellm_config(upstream: str) -> str:
    """A one-model LiteLLM proxy config forwarding ``up`` to ``upstream``."""
    return (
        "model_list:\n"
        "  - model_name: up\n"
        "    litellm_params:\n"
        "      model: openai/up\n"
        f"      api_base: {upstream}\n"
        "      api_key: sk-bench-not-a-key\n"
        # No client auth, as for mixroute and the bare proxy in this bench (no keys);
        # the server listens on 127.0.0.1 only.
        "general_settings:\n"
        "  dangerously_permit_weak_or_unset_master_key: true\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
    )


def spawn_litellm(
    python: Path, config: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """Start the LiteLLM proxy (one worker) pinned to CPU 1."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LITELLM", "OPENAI"))
    }
    env.update(LITELLM_ENV)
    cli = python.parent / "litellm"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                str(cli),
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            cwd=config.parent,
            env=env,
            stdout=out,
            stderr=out,
        )
    ov._pin(proc.pid, 1)
    return proc


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def summarise(
    runs: list[ov.Run], classify_ms: dict[str, float] | None = None
) -> dict[str, Any]:
    """Added latency and throughput per target, as ratios to direct and LiteLLM.

    ``classify_ms``: the classifier's p50 per routed target, for issue 3's
    latency bound (added p50 at most 1 ms plus classification time)."""
    classify_ms = classify_ms or {}

    def get(target: str, mode: str, conc: int) -> ov.Run:
        return next(
            r for r in runs if (r.target, r.mode, r.concurrency) == (target, mode, conc)
        )

    out: dict[str, Any] = {}
    for mode in ("whole", "stream"):
        key = "ttft_p50_ms" if mode == "stream" else "p50_ms"
        key99 = "ttft_p99_ms" if mode == "stream" else "p99_ms"
        d1, d64 = get("direct", mode, 1), get("direct", mode, 64)
        rows: dict[str, Any] = {
            "direct": {
                "p50_ms": getattr(d1, key),
                "p99_ms": getattr(d1, key99),
                "rps_c64": round(d64.rps, 1),
            }
        }
        for t in TARGETS:
            one, many = get(t, mode, 1), get(t, mode, 64)
            rows[t] = {
                "p50_ms": getattr(one, key),
                "p99_ms": getattr(one, key99),
                "added_p50_ms": round(getattr(one, key) - getattr(d1, key), 3),
                "added_p99_ms": round(getattr(one, key99) - getattr(d1, key99), 3),
                "rps_c64": round(many.rps, 1),
                "errors": one.errors + many.errors,
                "cpu_us_per_request_c64": many.cpu_us_per_request,
            }
        lite = rows["litellm"]
        bare = rows["bare-proxy"]
        for t in TARGETS:
            r = rows[t]
            r["rps_vs_direct"] = _ratio(r["rps_c64"], rows["direct"]["rps_c64"])
            r["rps_vs_litellm"] = _ratio(r["rps_c64"], lite["rps_c64"])
            r["rps_vs_bare"] = _ratio(r["rps_c64"], bare["rps_c64"])
            r["added_p50_vs_litellm"] = _ratio(r["added_p50_ms"], lite["added_p50_ms"])
            r["added_p99_vs_litellm"] = _ratio(r["added_p99_ms"], lite["added_p99_ms"])
            r["p50_vs_direct"] = _ratio(r["p50_ms"], rows["direct"]["p50_ms"])
            r["p99_vs_direct"] = _ratio(r["p99_ms"], rows["direct"]["p99_ms"])
        checks = {}
        for t in ("mixroute-named", "mixroute-auto", "mixroute-auto-new"):
            r = rows[t]
            checks[t] = {
                "added_p50_le_eighth_of_litellm": r["added_p50_ms"]
                <= lite["added_p50_ms"] / 8,
                "rps_c64_ge_10x_litellm": (r["rps_vs_litellm"] or 0) >= 10,
                "rps_c64_ge_half_bare": (r["rps_vs_bare"] or 0) >= 0.5,
                "added_p50_le_1ms_plus_classification": r["added_p50_ms"]
                <= 1.0 + classify_ms.get(t, 0.0),
            }
        rows["targets_met"] = checks
        out[mode] = rows
    return out


def non_loopback_peers(pid: int) -> list[str]:
    """Remote addresses of ``pid``'s open TCP/UDP sockets that are not loopback.

    Read from /proc (Linux): the process's socket inodes matched against the
    kernel's socket tables. Empty elsewhere.
    """
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    peers = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[9] not in inodes:
                continue
            host, port = f[2].split(":")
            if int(port, 16) == 0:
                continue  # listening or unconnected
            # /proc writes IPv4 as little-endian hex: 127.x.y.z ends in 7F.
            loopback = (
                (len(host) == 8 and host.endswith("7F"))
                or host == "0" * 24 + "01000000"
                or (host.startswith("0" * 16 + "FFFF0000") and host.endswith("7F"))
            )
            if not loopback:
                peers.append(f"{table} {host}:{int(port, 16)}")
    return peers


def _wait_alive(proc: subprocess.Popen[bytes], url: str, seconds: float = 180) -> None:
    """Wait for ``url`` to answer 200, failing at once if ``proc`` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"LiteLLM exited with {proc.returncode} at start")
        try:
            ov._wait_ready(url, 2)
            return
        except RuntimeError:
            pass
    raise RuntimeError(f"{url} did not become ready in {seconds:.0f} s")


async def _run(
    ports: dict[str, int],
    procs: dict[str, subprocess.Popen[bytes]],
    n1: int,
    n64: int,
    rounds: int,
    fast: int,
) -> tuple[list[ov.Run], dict[str, Any]]:
    pids = {k: p.pid for k, p in procs.items()}
    await ov._wait_port(ports["up"])
    await ov._wait_port(ports["bare"])
    await asyncio.to_thread(
        ov._wait_ready, f"http://127.0.0.1:{ports['mix']}/readyz", 120
    )
    await asyncio.to_thread(
        _wait_alive,
        procs["lite"],
        f"http://127.0.0.1:{ports['lite']}/health/liveliness",
    )
    ready_s = time.monotonic() - STARTED[0]
    print(f"  all targets ready after {ready_s:.1f} s", flush=True)
    path = "/v1/chat/completions"
    targets: dict[str, tuple[str, str, int | None]] = {
        "direct": (f"http://127.0.0.1:{ports['up']}{path}", "up", None),
        "bare-proxy": (f"http://127.0.0.1:{ports['bare']}{path}", "up", pids["bare"]),
        "mixroute-named": (
            f"http://127.0.0.1:{ports['mix']}{path}",
            "small",
            pids["mix"],
        ),
        "mixroute-auto": (
            f"http://127.0.0.1:{ports['mix']}{path}",
            "auto",
            pids["mix"],
        ),
        # Every request a prompt new to the gateway: the classifier runs each
        # time (above, one prompt repeated: its cache answers after the first).
        "mixroute-auto-new": (
            f"http://127.0.0.1:{ports['mix']}{path}",
            "auto" + ov.NEW_PROMPTS,
            pids["mix"],
        ),
        "litellm": (f"http://127.0.0.1:{ports['lite']}{path}", "up", pids["lite"]),
    }
    runs: list[ov.Run] = []
    peers: set[str] = set(non_loopback_peers(pids["lite"]))
    for stream in (False, True):
        for conc, n in ((1, n1), (64, n64)):
            t0 = time.monotonic()
            counts = {t: n * (1 if t == "litellm" else fast) for t in targets}
            runs += await ov.measure(targets, stream, conc, counts, rounds)
            mode = "stream" if stream else "whole"
            took = time.monotonic() - t0
            print(
                f"  {mode} c={conc}: {n * fast} requests per target, {n} for "
                f"LiteLLM, {took:.1f} s",
                flush=True,
            )
            peers.update(non_loopback_peers(pids["lite"]))
    mix = f"http://127.0.0.1:{ports['mix']}"
    classify = {
        "mixroute-auto": await ov._classify_ms(mix),
        "mixroute-auto-new": await ov._classify_ms(mix, new=True),
    }
    return runs, {
        "litellm_ready_s": round(ready_s, 1),
        "non_loopback": sorted(peers),
        "classify_p50_ms": {k: round(v, 3) for k, v in classify.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """Install LiteLLM once if needed, run all targets, write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # LiteLLM serves 15-50 requests/s here (streams slowest): these sizes keep
    # its phases, hence the whole run, under about three minutes on 2 cores.
    parser.add_argument("--n1", type=int, default=300, help="LiteLLM's requests at c=1")
    parser.add_argument(
        "--n64", type=int, default=640, help="LiteLLM's requests at c=64"
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--fast", type=int, default=4, help="times more requests for non-LiteLLM"
    )
    args = parser.parse_args(argv if argv is not None else [])

    python = venv.ensure("litellm", [LITELLM])
    ov._use_uvloop()
    ov._pin(os.getpid(), 0)
    # A SIGTERM (e.g. from `timeout`) must still stop the child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="mixroute-peers-"))
    log = tmp / "processes.log"
    ports = {k: ov._free_port() for k in ("up", "bare", "mix", "lite")}
    upstream = f"http://127.0.0.1:{ports['up']}/v1"
    cfg = tmp / "mixroute.yaml"
    cfg.write_text(ov._config(upstream, tmp / "usage.sqlite", False))
    lite_cfg = tmp / "litellm.yaml"
    lite_cfg.write_text(litellm_config(upstream))
    started = STARTED[0] = time.monotonic()
    procs = {
        "up": ov._spawn(["-m", "bench.fast_upstream", str(ports["up"])], 0, log),
        "bare": ov._spawn(
            ["-m", "bench.bare_proxy", str(ports["bare"]), upstream.rsplit("/", 1)[0]],
            1,
            log,
        ),
        "mix": ov._spawn(ov.serve_args(cfg, ports["mix"]), 1, log),
        "lite": spawn_litellm(python, lite_cfg, ports["lite"], log),
    }
    try:
        runs, seen = asyncio.run(
            _run(ports, procs, args.n1, args.n64, args.rounds, args.fast)
        )
    finally:
        ov.stop(procs.values())
    report = {
        "litellm_version": venv.version(python, "litellm"),
        "litellm_install_seconds": venv.install_seconds("litellm"),
        "seconds": round(time.monotonic() - started, 1),
        "litellm_ready_seconds": seen["litellm_ready_s"],
        "litellm_non_loopback_connections": seen["non_loopback"],
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
        "runs": [{**asdict(r), "rps": round(r.rps, 1)} for r in runs],
        "classify_p50_ms": seen["classify_p50_ms"],
        "summary": summarise(runs, seen["classify_p50_ms"]),
        "process_log": str(log),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)


def _print(report: dict[str, Any]) -> None:
    print(
        f"LiteLLM {report['litellm_version']}: ready in "
        f"{report['litellm_ready_seconds']} s, non-loopback connections: "
        f"{report['litellm_non_loopback_connections'] or 'none'}; run "
        f"{report['seconds']} s"
    )
    head = f"{'mode':<7}{'target':<16}{'p50':>8}{'added':>8}{'added99':>9}"
    print(head + f"{'req/s64':>9}{'vs lite':>9}{'vs bare':>9}{'err':>5}")
    for mode, rows in report["summary"].items():
        for t in TARGETS:
            r = rows[t]
            print(
                f"{mode:<7}{t:<16}{r['p50_ms']:>8.2f}{r['added_p50_ms']:>8.2f}"
                f"{r['added_p99_ms']:>9.2f}{r['rps_c64']:>9.0f}"
                f"{r['rps_vs_litellm'] or 0:>9.2f}{r['rps_vs_bare'] or 0:>9.2f}"
                f"{r['errors']:>5}"
            )
        print(f"  targets: {rows['targets_met']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
