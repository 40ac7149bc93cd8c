"""Response cache: latency of a hit against a miss (issue 5).

    python -m bench.cache [--n 100] [--no-redis]

A fake OpenAI upstream on loopback that takes 50 ms per answer, and a real
``mixroute serve`` process with ``cache: {enabled: true}``. At concurrency 1
over one keep-alive aiohttp session, with ``temperature: 0`` and a named
model: N distinct prompts (misses), the same N again (exact hits), then N
light paraphrases (``"please, "`` in front, no final punctuation: similarity
hits when the encoder puts them within ``cache.similarity``). Latency is
measured at the client; each phase also counts what the server reported in
``x-mixroute-cache``. Runs with the memory state, and again with Redis when
``redis-server`` is installed. Writes ``bench/results/cache.json``.
Every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench import overhead as ov

RESULTS = ov.ROOT / "bench" / "results" / "cache.json"
SERVICE_S = 0.050
MODEL = "small"
SUBJECTS = (
    "volcanoes", "honeybees", "the Roman aqueducts", "black holes", "sourdough bread",
    "chess openings", "coral reefs", "the printing press", "glaciers", "octopuses",
    "the Silk Road", "solar panels", "jazz improvisation", "tidal energy", "origami",
    "the immune system", "medieval castles", "desert cacti", "quantum tunnelling",
    "the Great Barrier Reef", "paper money", "bicycle gears", "Arctic foxes",
    "vaccines", "lighthouses",
)  # fmt: skip
FRAMES = (
    "Write a four-line poem about {}.",
    "Explain the history of {} to a ten-year-old.",
    "List three surprising facts about {}.",
    "What are the main engineering or biological challenges related to {}?",
)


def prompts(n: int) -> list[str]:
    """``n`` distinct prompts (subject x frame), at most 100."""
    out = [f.format(s) for f in FRAMES for s in SUBJECTS]
    return out[:n]


def paraphrase(prompt: str) -> str:
    """A light rewording with its own exact key: polite prefix, no final stop."""
    return "please, " + prompt[0].lower() + prompt[1:].rstrip(".?!")


# -- the fake upstream (its own thread and loop) ------------------------------


async def _answer(request: web.Request) -> web.Response:
    body = await request.json()
    await asyncio.sleep(SERVICE_S)
    text = f"An answer to: {body['messages'][-1]['content'][:60]}"
    return web.json_response(
        {
            "id": "cmpl-bench",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model", "up"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 12},
        }
    )


class SlowUpstream:
    """An OpenAI-compatible upstream answering every chat in ``SERVICE_S``."""

    def __init__(self) -> None:
        self.port = ov._free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> SlowUpstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", _answer)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- the gateway and an optional redis-server ---------------------------------


def _config(upstream: str, ledger: Path, redis_url: str | None) -> str:
    models = "\n".join(
        f"  - {{name: {name}, base_url: '{upstream}', model: up}}"
        for name in ("small", "medium", "large")
    )
    from mixroute.config import default_config_text

    default = default_config_text()
    routes = default[default.index("\nroutes:") :]
    state = (
        f"state: {{backend: redis, redis_url: '{redis_url}', redis_url_env: null}}\n"
        if redis_url
        else "state: {backend: memory}\n"
    )
    return (
        f"version: 1\nmodels:\n{models}\n"
        "policies: {default_model: large}\n"
        f"server: {{ledger_path: '{ledger}'}}\n"
        "guards: {pii: allow, jailbreak: allow}\n"
        "cache: {enabled: true}\n" + state + routes
    )


def _start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = ov._free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(tmp)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"redis://127.0.0.1:{port}/0"


# -- measuring -----------------------------------------------------------------


async def _phase(
    session: aiohttp.ClientSession, url: str, texts: list[str]
) -> dict[str, Any]:
    latencies: list[float] = []
    hits = errors = 0
    for text in texts:
        body = {
            "model": MODEL,
            "temperature": 0,
            "messages": [{"role": "user", "content": text}],
        }
        start = time.perf_counter()
        async with session.post(url, json=body) as r:
            await r.read()
            elapsed = time.perf_counter() - start
            if r.status != 200:
                errors += 1
                continue
            hits += r.headers.get("x-mixroute-cache") == "hit"
        latencies.append(elapsed * 1000)
    return {
        "requests": len(texts),
        "errors": errors,
        "server_hits": hits,
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
    }


async def _measure(port: int, n: int) -> dict[str, Any]:
    await asyncio.to_thread(ov._wait_ready, f"http://127.0.0.1:{port}/readyz", 120)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    texts = prompts(n)
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the connection and the encoder on prompts outside the set.
        await _phase(session, url, [f"Warm-up question number {i}." for i in range(5)])
        misses = await _phase(session, url, texts)
        exact = await _phase(session, url, texts)
        similar = await _phase(session, url, [paraphrase(t) for t in texts])
        # The floor: one HTTP round trip to the same server doing no work.
        floor: list[float] = []
        for _ in range(n):
            start = time.perf_counter()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as r:
                await r.read()
            floor.append((time.perf_counter() - start) * 1000)
    return {
        "miss": misses,
        "exact_hit": exact,
        "similar": similar,
        "healthz_p50_ms": _pct(floor, 0.5),
    }


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 1) if a and b else None


def _run(backend: str, n: int, tmp: Path, log: Path) -> dict[str, Any] | None:
    redis: tuple[subprocess.Popen[bytes], str] | None = None
    if backend == "redis":
        redis = _start_redis(tmp)
        if redis is None:
            return None
    try:
        with SlowUpstream() as upstream:
            cfg = tmp / f"cache-{backend}.yaml"
            cfg.write_text(
                _config(
                    f"http://127.0.0.1:{upstream.port}/v1",
                    tmp / f"usage-{backend}.sqlite",
                    redis[1] if redis else None,
                )
            )
            port = ov._free_port()
            args = ov.serve_args(cfg, port)
            # Not pinned to a CPU: on a shared machine a pinned gateway waits
            # for whatever else runs on that core.
            with open(log, "ab") as out:
                server = subprocess.Popen(
                    [sys.executable, *args], cwd=ov.ROOT, stdout=out, stderr=out
                )
            try:
                phases = asyncio.run(_measure(port, n))
            finally:
                ov.stop([server], 10)
    finally:
        if redis is not None:
            ov.stop([redis[0]], 10)
    miss = phases["miss"]["p50_ms"]
    exact = _ratio(miss, phases["exact_hit"]["p50_ms"])
    return {
        "backend": backend,
        **phases,
        "miss_over_exact_hit_p50": exact,
        "miss_over_similar_p50": _ratio(miss, phases["similar"]["p50_ms"]),
        # Issue 5 is done when a hit's p50 is at least 20x below a miss's.
        "target_20x_met": exact is not None and exact >= 20,
    }


def _print(report: dict[str, Any]) -> None:
    print(
        f"upstream service time {report['upstream_service_ms']} ms, "
        f"{report['prompts']} prompts, concurrency 1, keep-alive"
    )
    head = f"{'backend':8} {'phase':10} {'hits':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(head + f" {'miss/hit p50':>13}")
    for run in report["runs"]:
        for phase, ratio in (
            ("miss", None),
            ("exact_hit", run["miss_over_exact_hit_p50"]),
            ("similar", run["miss_over_similar_p50"]),
        ):
            r = run[phase]
            if phase == "miss":
                print(
                    f"{run['backend']:8} {'/healthz':10} {'':>9} "
                    f"{run['healthz_p50_ms']!s:>8}"
                )
            hits = f"{r['server_hits']}/{r['requests']}"
            print(
                f"{run['backend']:8} {phase:10} {hits:>9} {r['p50_ms']!s:>8} "
                f"{r['p99_ms']!s:>8} {'' if ratio is None else f'{ratio}x':>13}"
            )


def main(argv: list[str] | None = None) -> None:
    """Measure hits against misses; print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="distinct prompts (<=100)")
    parser.add_argument("--no-redis", action="store_true", help="memory state only")
    args = parser.parse_args(argv)

    # A SIGTERM (e.g. from `timeout`) must still stop the child processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="mixroute-bench-cache-"))
    log = tmp / "processes.log"
    backends = ["memory"] if args.no_redis else ["memory", "redis"]
    runs = [r for b in backends if (r := _run(b, args.n, tmp, log)) is not None]
    report: dict[str, Any] = {
        "upstream_service_ms": SERVICE_S * 1000,
        "prompts": len(prompts(args.n)),
        "model": MODEL,
        "runs": runs,
        "process_log": str(log),
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    _print(report)
    print(f"load average {report['load_average'][0]:.1f} on {report['cpus']} CPUs")


if __name__ == "__main__":
    main()
