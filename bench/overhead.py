"""Gateway overhead: mixroute against a bare proxy and the upstream itself.

Run ``python -m bench.overhead`` (or ``main()``). Four targets in one run, all
on loopback against the same fast fake upstream (a separate process):

- ``direct``: the upstream itself (``bench/fast_upstream.py``);
- ``bare-proxy``: ``bench/bare_proxy.py``, an aiohttp pass-through;
- ``mixroute-named``: mixroute (``mixroute serve``, uvicorn) with a named model,
  so classification is off;
- ``mixroute-auto``: the same server with ``model: "auto"``.

Reported: latency p50/p99 at concurrency 1 and added latency against direct,
requests/s at concurrency 64, for whole answers and streams (time to first
token). Proxies run pinned to one CPU where the machine has two or more; the
load generator and the upstream share the other. Every loop is bounded.
Results go to ``bench/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "overhead.json"
PROMPT = "Write a Python function that checks whether a number is prime."


# -- load generation --------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    target: str
    mode: str  # "whole" or "stream"
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    cpu_us_per_request: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


#: A model name ending in this asks ``load`` for a prompt new to the gateway
#: on every request, so that its classifier's cache never answers.
NEW_PROMPTS = "#new"
_sent = itertools.count()


def new_prompts() -> list[str]:
    """The demo prompts shipped with mixroute (licences in their NOTICE)."""
    from importlib import resources

    text = resources.files("mixroute.demo_data").joinpath("prompts.jsonl").read_text()
    return [json.loads(line)["prompt"] for line in text.splitlines() if line.strip()]


def _bodies(model: str, stream: bool) -> Iterator[bytes]:
    """The request bodies for ``model``: one repeated, or each one new."""

    def body(prompt: str) -> bytes:
        messages = [{"role": "user", "content": prompt}]
        name = model.removesuffix(NEW_PROMPTS)
        return json.dumps(
            {"model": name, "messages": messages, "stream": stream}
        ).encode()

    if not model.endswith(NEW_PROMPTS):
        return itertools.repeat(body(PROMPT))
    prompts = new_prompts()
    return (body(f"{prompts[n % len(prompts)]}\n\n(request {n})") for n in _sent)


async def load(
    url: str, model: str, *, stream: bool, concurrency: int, per_worker: int
) -> tuple[list[float], list[float], int, float]:
    """Closed-loop load: ``concurrency`` workers × ``per_worker`` requests each."""
    bodies = _bodies(model, stream)
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    ttfts: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal errors
            for _ in range(per_worker):
                t0 = time.perf_counter()
                first: float | None = None
                body = next(bodies)
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        if stream:
                            async for chunk in resp.content.iter_any():
                                if first is None and b"Hello" in chunk:
                                    first = time.perf_counter()
                        else:
                            await resp.read()
                        ok = resp.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                end = time.perf_counter()
                if not ok:
                    errors += 1
                    continue
                latencies.append((end - t0) * 1000)
                if first is not None:
                    ttfts.append((first - t0) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return latencies, ttfts, errors, seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    targets: dict[str, tuple[str, str, int | None]],
    stream: bool,
    concurrency: int,
    n: int | dict[str, int],
    rounds: int = 5,
) -> list[Run]:
    """Each target for ``n`` requests (or ``n[target]``: a slow peer may get
    fewer), interleaved in ``rounds`` so that changes in machine load hit every
    target alike. ``targets``: name → (url, model, pid of the serving process
    whose CPU time is counted, or None)."""
    counts = n if isinstance(n, dict) else dict.fromkeys(targets, n)
    lat: dict[str, list[float]] = {t: [] for t in targets}
    ttft: dict[str, list[float]] = {t: [] for t in targets}
    errors = dict.fromkeys(targets, 0)
    seconds = dict.fromkeys(targets, 0.0)
    cpu = dict.fromkeys(targets, 0.0)
    for url, model, _ in targets.values():  # warm-up, not counted
        await load(url, model, stream=stream, concurrency=concurrency, per_worker=3)
    for _ in range(rounds):
        for name, (url, model, pid) in targets.items():
            per = max(1, counts[name] // concurrency // rounds)
            before = cpu_seconds(pid) if pid else 0.0
            a, b, e, sec = await load(
                url, model, stream=stream, concurrency=concurrency, per_worker=per
            )
            cpu[name] += (cpu_seconds(pid) - before) if pid else 0.0
            lat[name] += a
            ttft[name] += b
            errors[name] += e
            seconds[name] += sec
    runs = []
    for name, (_, _, pid) in targets.items():
        done = len(lat[name])
        runs.append(
            Run(
                name,
                "stream" if stream else "whole",
                concurrency,
                done,
                errors[name],
                seconds[name],
                _pct(lat[name], 0.5),
                _pct(lat[name], 0.99),
                _pct(ttft[name], 0.5) if ttft[name] else None,
                _pct(ttft[name], 0.99) if ttft[name] else None,
                round(cpu[name] * 1e6 / done, 1) if pid and done else None,
            )
        )
    return runs


# -- processes ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


def _pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(pid, {cpu})


def _spawn(args: list[str], cpu: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=out, stderr=out
        )
    _pin(proc.pid, cpu)
    return proc


def serve_args(config: Path, port: int, log_level: str = "warning") -> list[str]:
    """The arguments of ``python -m mixroute.cli serve`` for a bench."""
    return [
        *("-m", "mixroute.cli", "serve", "--config", str(config)),
        *("--port", str(port), "--log-level", log_level),
    ]


def stop(procs: Iterable[subprocess.Popen[bytes]], seconds: float = 15.0) -> None:
    """SIGINT every process, then wait for each (killed past ``seconds``)."""
    procs = list(procs)
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(seconds)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _wait_ready(url: str, seconds: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # loopback only
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready in {seconds:.0f} s")


def _config(upstream: str, ledger: Path, guards: bool) -> str:
    models = "\n".join(
        f"  - {{name: {n}, base_url: '{upstream}', model: up, "
        f"price: {{input_per_mtok: {p[0]}, output_per_mtok: {p[1]}}}}}"
        for n, p in {
            "small": (0.15, 0.6),
            "medium": (0.4, 1.6),
            "large": (2, 8),
        }.items()
    )
    from mixroute.config import default_config_text

    default = default_config_text()
    routes = default[default.index("\nroutes:") :]
    return (
        f"version: 1\nmodels:\n{models}\n"
        "policies: {default_model: large, fallbacks: {small: [medium]}}\n"
        f"server: {{ledger_path: '{ledger}'}}\n"
        + ("" if guards else "guards: {pii: allow, jailbreak: allow}\n")
        + routes
    )


async def _classify_ms(base: str, n: int = 200, *, new: bool = False) -> float:
    """The classifier's p50 in ms as the gateway reports it: for ``PROMPT``
    again and again (a cache hit after the first), or with ``new`` for a
    prompt it has not seen (a shipped demo prompt plus a probe number)."""
    prompts = new_prompts() if new else [PROMPT]
    times = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            prompt = f"{prompts[i % len(prompts)]}\n\n(probe {i})" if new else PROMPT
            async with s.post(f"{base}/v1/classify", json={"prompt": prompt}) as r:
                times.append(float((await r.json())["latency_ms"]))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    """Run every target and mode; print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n1", type=int, default=600, help="requests at c=1")
    parser.add_argument("--n64", type=int, default=3840, help="requests at c=64")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--log-level", default="info", help="mixroute's log level")
    parser.add_argument(
        "--guards",
        action="store_true",
        help="keep the default guards (PII scan, jailbreak flag) on; by default "
        "the bench measures routing without them",
    )
    args = parser.parse_args(argv)

    _use_uvloop()
    _pin(os.getpid(), 0)
    # A SIGTERM (e.g. from `timeout`) must still stop the child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="mixroute-bench-"))
    log = tmp / "processes.log"
    up_port, bare_port, mix_port = _free_port(), _free_port(), _free_port()
    upstream = f"http://127.0.0.1:{up_port}/v1"
    cfg = tmp / "bench.yaml"
    cfg.write_text(_config(upstream, tmp / "usage.sqlite", args.guards))
    procs = [
        _spawn(["-m", "bench.fast_upstream", str(up_port)], 0, log),
        _spawn(
            ["-m", "bench.bare_proxy", str(bare_port), f"http://127.0.0.1:{up_port}"],
            1,
            log,
        ),
        _spawn(serve_args(cfg, mix_port, args.log_level), 1, log),
    ]
    try:
        pids = (procs[1].pid, procs[2].pid)
        report = asyncio.run(_run_all(up_port, bare_port, mix_port, pids, args))
    finally:
        stop(procs)
    report["process_log"] = str(log)
    report["guards"] = args.guards
    report["load_average"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    _print(report)


async def _run_all(
    up: int,
    bare: int,
    mix: int,
    pids: tuple[int, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    await _wait_port(up)
    await _wait_port(bare)
    await asyncio.to_thread(_wait_ready, f"http://127.0.0.1:{mix}/readyz")
    path = "/v1/chat/completions"
    targets: dict[str, tuple[str, str, int | None]] = {
        "direct": (f"http://127.0.0.1:{up}{path}", "up", None),
        "bare-proxy": (f"http://127.0.0.1:{bare}{path}", "up", pids[0]),
        "mixroute-named": (f"http://127.0.0.1:{mix}{path}", "small", pids[1]),
        "mixroute-auto": (f"http://127.0.0.1:{mix}{path}", "auto", pids[1]),
    }
    runs: list[Run] = []
    for stream in (False, True):
        for conc, n in ((1, args.n1), (64, args.n64)):
            group = await measure(targets, stream, conc, n, args.rounds)
            for r in group:
                print(
                    f"{r.target:15} {'stream' if stream else 'whole':6} c={conc:<3}"
                    f" p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms"
                    f"  {r.rps:7.0f} req/s  cpu {r.cpu_us_per_request} µs/req"
                    f"  errors {r.errors}",
                    flush=True,
                )
            runs += group
    classify = await _classify_ms(f"http://127.0.0.1:{mix}")
    return _summarise(runs, classify)


async def _wait_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def _summarise(runs: list[Run], classify_ms: float) -> dict[str, Any]:
    def get(target: str, mode: str, conc: int) -> Run:
        return next(
            r for r in runs if (r.target, r.mode, r.concurrency) == (target, mode, conc)
        )

    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "classification_p50_ms": round(classify_ms, 3),
        "runs": [{**asdict(r), "rps": round(r.rps, 1)} for r in runs],
        "summary": {},
    }
    for mode in ("whole", "stream"):
        key = "ttft_p50_ms" if mode == "stream" else "p50_ms"
        direct = get("direct", mode, 1)
        bare64 = get("bare-proxy", mode, 64)
        s: dict[str, Any] = {}
        for t in ("bare-proxy", "mixroute-named", "mixroute-auto"):
            one, many = get(t, mode, 1), get(t, mode, 64)
            added = (getattr(one, key) or 0) - (getattr(direct, key) or 0)
            added99 = one.p99_ms - direct.p99_ms
            s[t] = {
                "cpu_us_per_request_c64": many.cpu_us_per_request,
                "added_p50_ms": round(added, 3),
                "added_p99_ms": round(added99, 3),
                "rps_c64": round(many.rps, 1),
                "rps_vs_bare": round(many.rps / bare64.rps, 3) if bare64.rps else None,
            }
        named, auto = s["mixroute-named"], s["mixroute-auto"]
        s["targets_met"] = {
            "named_added_p50_le_1ms": named["added_p50_ms"] <= 1.0,
            "auto_added_p50_le_1ms_plus_classify": (
                auto["added_p50_ms"] <= 1.0 + classify_ms
            ),
            "named_rps_ge_half_bare": (named["rps_vs_bare"] or 0) >= 0.5,
            "auto_rps_ge_half_bare": (auto["rps_vs_bare"] or 0) >= 0.5,
        }
        out["summary"][mode] = s
    return out


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="runs (latency in ms; stream latency is time to first token)")
    cols = ("target", "mode", "c", "ok", "err", "p50", "p99", "ttft p50", "req/s")
    for col in (*cols, "cpu µs/req"):
        table.add_column(col, justify="right")
    for r in report["runs"]:
        table.add_row(
            r["target"],
            r["mode"],
            str(r["concurrency"]),
            str(r["requests"]),
            str(r["errors"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            "-" if r["ttft_p50_ms"] is None else f"{r['ttft_p50_ms']:.2f}",
            f"{r['rps']:.0f}",
            "-"
            if r["cpu_us_per_request"] is None
            else f"{r['cpu_us_per_request']:.0f}",
        )
    console.print(table)
    classify = report["classification_p50_ms"]
    summary = Table(title=f"added vs direct (classification p50 {classify} ms)")
    for col in ("mode", "target", "added p50", "added p99", "req/s c64", "vs bare"):
        summary.add_column(col, justify="right")
    for mode, s in report["summary"].items():
        for t in ("bare-proxy", "mixroute-named", "mixroute-auto"):
            v = s[t]
            summary.add_row(
                mode,
                t,
                f"{v['added_p50_ms']:.2f}",
                f"{v['added_p99_ms']:.2f}",
                f"{v['rps_c64']:.0f}",
                f"{v['rps_vs_bare']:.2f}",
            )
    console.print(summary)
    for mode, s in report["summary"].items():
        console.print(f"{mode}: {s['targets_met']}")
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
