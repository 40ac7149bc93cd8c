"""Scaling: mixroute's throughput and tail latency as concurrency rises, and its
memory over 10,000 requests.

    python -m bench.scaling [--quick]

mixroute (``mixroute serve``, one process pinned to one CPU) in front of
bench/overhead.py's fake upstream on loopback. For concurrency 1, 8, 32, 128
and 512: requests/s, p50 and p99 of whole answers with a named model (the
gateway's own cost, classification off), plus one ``model: "auto"`` row per
level. Then 10,000 requests (whole and streamed, named and auto, at
concurrency 32) with the gateway's resident memory (RSS, from /proc) sampled
every 1,000: a leak shows as a rising line after warm-up. Every loop is
bounded. Writes ``bench/results/scaling.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import overhead as ov

RESULTS = ov.ROOT / "bench" / "results" / "scaling.json"
LEVELS = (1, 8, 32, 128, 512)
PATH = "/v1/chat/completions"


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (Linux /proc), None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def _level(url: str, model: str, conc: int, total: int) -> dict[str, Any]:
    per = max(1, total // conc)
    lat, _, errors, seconds = await ov.load(
        url, model, stream=False, concurrency=conc, per_worker=per
    )
    return {
        "model": model,
        "concurrency": conc,
        "requests": len(lat),
        "errors": errors,
        "rps": round(len(lat) / seconds, 1) if seconds else 0.0,
        "p50_ms": _pct(lat, 0.5),
        "p99_ms": _pct(lat, 0.99),
    }


async def _run(port: int, up: int, pid: int, quick: bool) -> dict[str, Any]:
    await ov._wait_port(up)
    await asyncio.to_thread(ov._wait_ready, f"http://127.0.0.1:{port}/readyz", 120)
    url = f"http://127.0.0.1:{port}{PATH}"
    scale = 0.25 if quick else 1.0
    rss_idle = rss_mib(pid)
    await ov.load(url, "small", stream=False, concurrency=8, per_worker=20)
    curve = []
    for conc in LEVELS:
        total = int(max(400, conc * 10) * scale) or conc
        for model in ("small", "auto"):
            row = await _level(url, model, conc, total)
            curve.append(row)
            print(
                f"c={conc:<4} {model:<6} {row['rps']:>8.0f} req/s  p50 "
                f"{row['p50_ms']} ms  p99 {row['p99_ms']} ms  err {row['errors']}",
                flush=True,
            )

    total, step, conc = (2000, 250, 32) if quick else (10_000, 1000, 32)
    mixes = [(False, "small"), (True, "small"), (False, "auto"), (True, "auto")]
    memory = [{"requests": 0, "rss_mib": rss_mib(pid)}]
    done = errors = 0
    while done < total:
        stream, model = mixes[(done // step) % len(mixes)]
        lat, _, err, _ = await ov.load(
            url, model, stream=stream, concurrency=conc, per_worker=step // conc + 1
        )
        done += len(lat) + err
        errors += err
        memory.append({"requests": done, "rss_mib": rss_mib(pid)})
    print(f"RSS (MiB) by requests served: {memory}", flush=True)
    return {
        "curve": curve,
        "rss_idle_mib": rss_idle,
        "memory": memory,
        "memory_errors": errors,
    }


def _growth(memory: list[dict[str, Any]]) -> float | None:
    """RSS growth from the first sample after warm-up to the last, in MiB."""
    values = [m["rss_mib"] for m in memory if m["rss_mib"] is not None]
    if len(values) < 3:
        return None
    return round(values[-1] - values[1], 1)


def main(argv: list[str] | None = None) -> None:
    """Run the curve and the memory phase; print and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter the load")
    args = parser.parse_args(argv if argv is not None else [])

    ov._use_uvloop()
    ov._pin(os.getpid(), 0)
    # A SIGTERM (e.g. from `timeout`) must still stop the child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="mixroute-scaling-"))
    log = tmp / "processes.log"
    up, port = ov._free_port(), ov._free_port()
    cfg = tmp / "bench.yaml"
    cfg.write_text(ov._config(f"http://127.0.0.1:{up}/v1", tmp / "usage.sqlite", False))
    started = time.monotonic()
    procs = [
        ov._spawn(["-m", "bench.fast_upstream", str(up)], 0, log),
        ov._spawn(ov.serve_args(cfg, port), 1, log),
    ]
    try:
        report = asyncio.run(_run(port, up, procs[1].pid, args.quick))
    finally:
        ov.stop(procs)
    report["rss_growth_after_warmup_mib"] = _growth(report["memory"])
    report["seconds"] = round(time.monotonic() - started, 1)
    report["quick"] = args.quick
    report["process_log"] = str(log)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"RSS growth after warm-up: {report['rss_growth_after_warmup_mib']} MiB")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
