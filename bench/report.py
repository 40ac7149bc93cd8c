"""Run the benchmark suite and write its summary: ``make bench``.

    python -m bench.report --run     # set up peers once, run every bench, summarise
    python -m bench.report           # summarise the results already written

``--run`` first makes sure the peers' pinned venvs exist (a one-time install,
timed apart and not part of the run), then runs each bench in its own process
with a time cap, in this order: classification (mixroute, then semantic-router
and a scikit-learn baseline), cost-quality, guards, gateway overhead beside
LiteLLM, scaling. A bench that fails or runs out of time is reported and the
others still run. Then ``bench/results/*.json`` are collected into
``bench/results/SUMMARY.md`` and the committed ``BENCHMARKS.md``.

The classification and cost-quality benches read ``../shared/eval`` (present on
the project's machines and in CI, not on users'); without it they skip and the
summary says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SUMMARY = RESULTS / "SUMMARY.md"
BENCHMARKS = ROOT / "BENCHMARKS.md"
EVAL = ROOT.parent / "shared" / "eval"

#: (name, command after ``python``, time cap in seconds, stdout file or None)
STEPS: list[tuple[str, list[str], int, str | None]] = [
    ("classify", ["-m", "bench.classify"], 150, None),
    ("semrouter", ["-m", "bench.peers.semrouter"], 200, None),
    ("costq", ["-m", "bench.costq"], 60, None),
    ("guards", ["-m", "bench.guards", "--json"], 90, "guards.json"),
    ("peers_overhead", ["-m", "bench.peers.litellm_overhead"], 240, None),
    ("scaling", ["-m", "bench.scaling"], 120, None),
]


# -- running ---------------------------------------------------------------------


def _setup() -> dict[str, Any]:
    """Create the peers' venvs if missing; the time is reported, not counted."""
    from bench.peers import litellm_overhead, semrouter, venv

    start = time.monotonic()
    venv.ensure("litellm", [litellm_overhead.LITELLM])
    venv.ensure("semrouter", semrouter.REQUIREMENTS)
    return {
        "setup_seconds_this_run": round(time.monotonic() - start, 1),
        "litellm_install_seconds": venv.install_seconds("litellm"),
        "semrouter_install_seconds": venv.install_seconds("semrouter"),
    }


def run_all(only: set[str]) -> dict[str, Any]:
    """Run the benches in order, each capped; return what ran and how long."""
    meta: dict[str, Any] = {"setup": _setup(), "steps": {}}
    meta["load_average_start"] = os.getloadavg()
    started = time.monotonic()
    for name, args, cap, stdout_file in STEPS:
        if only and name not in only:
            continue
        print(f"== {name} (cap {cap} s)", flush=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE if stdout_file else None,
        )
        try:
            stdout, _ = proc.communicate(timeout=cap)
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            if stdout_file and proc.returncode == 0:
                RESULTS.mkdir(parents=True, exist_ok=True)
                (RESULTS / stdout_file).write_bytes(stdout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: the benches stop their own servers on it.
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            status = f"timed out after {cap} s"
        seconds = round(time.monotonic() - t0, 1)
        meta["steps"][name] = {"status": status, "seconds": seconds}
        print(f"== {name}: {status} in {seconds} s", flush=True)
    meta["run_seconds"] = round(time.monotonic() - started, 1)
    meta["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not only:  # a partial run leaves the last full run's record alone
        (RESULTS / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


# -- summarising -----------------------------------------------------------------


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def _version(package: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "not installed"


def _f(value: Any, fmt: str = ".2f") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return format(value, fmt)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _machine(meta: dict[str, Any] | None) -> list[str]:
    load = os.getloadavg()
    lines = [
        "## Machine and versions",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; commit "
        f"`{_git('rev-parse', '--short', 'HEAD')}`"
        + (" (with uncommitted changes)" if _git("status", "--porcelain") else ""),
        f"- CPU: {_cpu_model()}; `nproc` {os.cpu_count()}; "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}",
    ]
    if meta:
        a, b = meta.get("load_average_start"), meta.get("load_average_end")
        lines.append(
            f"- load average (1/5/15 min) at the start of the run: "
            f"{' / '.join(f'{x:.2f}' for x in a or [])}; at the end: "
            f"{' / '.join(f'{x:.2f}' for x in b or [])}. The machine is shared "
            "with other engineers' test runs and is noisy: absolute times move "
            "from run to run, ratios taken within one run much less."
        )
    else:
        lines.append(f"- load average now: {' / '.join(f'{x:.2f}' for x in load)}")
    lines.append(
        f"- mixroute {_version('mixroute')}, aiohttp {_version('aiohttp')}, "
        f"uvicorn {_version('uvicorn')}, uvloop {_version('uvloop')}"
    )
    return [*lines, ""]


def _overhead(r: dict[str, Any] | None) -> list[str]:
    out = [
        "## 1. Gateway overhead beside LiteLLM (`bench/peers/litellm_overhead.py`)",
        "",
    ]
    if r is None:
        return [*out, "_not run (no `bench/results/peers_overhead.json`)_", ""]
    out += [
        f"LiteLLM proxy {r['litellm_version']} (`litellm[proxy]`, own venv, one "
        f"worker, telemetry and remote cost-map fetch off, no database, no client "
        f"auth): ready {r.get('litellm_ready_seconds')} s after spawn; "
        f"connections to non-loopback addresses seen during the run: "
        f"{r.get('litellm_non_loopback_connections') or 'none'}. All six targets "
        "in one run, interleaved rounds, against one fast fake upstream on "
        "127.0.0.1; each proxy pinned to CPU 1, load generator and upstream on "
        "CPU 0. Added = target minus direct. Streams: time to first token. "
        "`mixroute-auto` sends one prompt again and again, so after the first "
        "request the classifier's cache answers; `mixroute-auto-new` sends a "
        "prompt new to the gateway every time (a shipped demo prompt plus a "
        "request number), so the classifier runs on every request. mixroute "
        "runs with its default garbage-collector settings "
        "(`server.gc_young_threshold`), the bare proxy and LiteLLM with "
        "Python's; in a side run the same settings made the bare proxy about "
        "3 % faster.",
        "",
    ]
    for mode, rows in r["summary"].items():
        out.append(f"**{'whole answers' if mode == 'whole' else 'streams (TTFT)'}**")
        out.append("")
        table = []
        d = rows["direct"]
        table.append(
            ["direct", _f(d["p50_ms"]), "–", "–", "–", _f(d["rps_c64"], ".0f"), "1.00"]
            + ["–"] * 2
        )
        for t in (
            "bare-proxy",
            "mixroute-named",
            "mixroute-auto",
            "mixroute-auto-new",
            "litellm",
        ):
            x = rows.get(t)
            if x is None:
                continue
            table.append(
                [
                    t,
                    _f(x["p50_ms"]),
                    _f(x["added_p50_ms"]),
                    _f(x["added_p99_ms"]),
                    _f(x["added_p50_vs_litellm"], ".3f"),
                    _f(x["rps_c64"], ".0f"),
                    _f(x["rps_vs_direct"]),
                    _f(x["rps_vs_litellm"], ".1f"),
                    _f(x["rps_vs_bare"]),
                ]
            )
        out += _table(
            [
                "target",
                "p50 c=1 (ms)",
                "added p50",
                "added p99",
                "added p50 / LiteLLM's",
                "req/s c=64",
                "÷ direct",
                "÷ LiteLLM",
                "÷ bare",
            ],
            table,
        )
        out.append("")
        classify = r.get("classify_p50_ms") or {}
        for t, checks in rows["targets_met"].items():
            line = (
                f"- {t}: added p50 ≤ ⅛ LiteLLM's: "
                f"{_f(checks['added_p50_le_eighth_of_litellm'])}; req/s ≥ 10× "
                f"LiteLLM's: {_f(checks['rps_c64_ge_10x_litellm'])}; req/s ≥ ½ "
                f"bare proxy's: {_f(checks['rps_c64_ge_half_bare'])}"
            )
            if t in classify and "added_p50_le_1ms_plus_classification" in checks:
                line += (
                    f"; added p50 ≤ 1 ms + classification p50 "
                    f"({classify[t]:.2f} ms): "
                    f"{_f(checks['added_p50_le_1ms_plus_classification'])}"
                )
            out.append(line)
        out.append("")
    return out


def _classification(
    mix: dict[str, Any] | None, peers: dict[str, Any] | None
) -> list[str]:
    out = ["## 2. Classification on routing-holdout", ""]
    if mix is None and peers is None:
        return [
            *out,
            "_skipped: ../shared/eval/routing-holdout.jsonl is not on this machine_",
            "",
        ]
    rows: list[tuple[str, dict[str, Any]]] = []
    if mix:
        rows.append((f"mixroute default ({mix.get('backend')})", mix))
        if "baseline_tfidf_lr" in mix:
            rows.append(
                (
                    "TF-IDF + LR (mixroute's numpy, bench/classify.py)",
                    mix["baseline_tfidf_lr"],
                )
            )
    if peers:
        rows.append(
            (
                f"semantic-router {peers['semantic_router_version']}, same encoder "
                "and utterances",
                peers["semantic_router"],
            )
        )
        if "sklearn_tfidf_lr" in peers:
            rows.append(
                (
                    "TF-IDF + LR (scikit-learn, trained on dev)",
                    peers["sklearn_tfidf_lr"],
                )
            )
    table = [
        [
            name,
            _f(m["accuracy"], ".3f"),
            _f(m["macro_f1"], ".3f"),
            _f(m.get("real_chat_accuracy"), ".3f"),
            _f(m["latency_ms"]["p50"]),
            _f(m["latency_ms"]["p99"]),
        ]
        for name, m in rows
    ]
    n = (mix or peers["semantic_router"])["n"] if (mix or peers) else 0  # type: ignore[index]
    out += [
        f"{n} rows; one query at a time on one thread; real chat = arena_hard_v2, "
        "mt_bench, vicuna_bench. semantic-router runs with the library's "
        "`IndexedRouter` defaults and no threshold (it always names a route).",
        "",
        *_table(
            ["router", "accuracy", "macro-F1", "real-chat acc.", "p50 ms", "p99 ms"],
            table,
        ),
        "",
    ]
    if peers and "sample_encoder_only_p50_ms" in peers["semantic_router"]:
        sr = peers["semantic_router"]
        out.append(
            f"- on every fifth row, timed back to back: semantic-router's call p50 "
            f"{sr['sample_router_p50_ms']:.2f} ms, the shared encoder alone p50 "
            f"{sr['sample_encoder_only_p50_ms']:.2f} ms"
        )
    if mix and peers:
        sr = peers["semantic_router"]
        better = mix["accuracy"] > sr["accuracy"]
        faster = mix["latency_ms"]["p99"] < sr["latency_ms"]["p99"]
        out.append(
            f"- target: mixroute accuracy above semantic-router's: {_f(better)}; "
            f"at lower p99: {_f(faster)}"
        )
        out.append("")
        sources = sorted(mix["per_source"])
        srcs = []
        for s in sources:
            line = [s, str(mix["per_source"][s]["n"])]
            for _, m in rows:
                ps = m.get("per_source", {}).get(s)
                line.append(_f(ps["accuracy"], ".3f") if ps else "–")
            srcs.append(line)
        out += [
            "Accuracy per source:",
            "",
            *_table(["source", "n", *[n for n, _ in rows]], srcs),
            "",
        ]
    return out


def _costq(r: dict[str, Any] | None) -> list[str]:
    out = ["## 3. Cost-quality (`bench/costq.py`)", ""]
    if r is None:
        return [
            *out,
            "_not run or skipped (needs ../shared/eval/costq-holdout.jsonl)_",
            "",
        ]

    def row(name: str, x: dict[str, Any]) -> list[str]:
        c = x["cpt"]
        return [
            name,
            _f(x["apgr"], ".3f"),
            f"{c['50']:.1%}",
            f"{c['80']:.1%}",
            f"{c['95']:.1%}",
        ]

    out += [
        f"{r['rows']} rows of {r['file']}; weak-only quality "
        f"{r['weak_quality']:.3f}, strong-only {r['strong_quality']:.3f}. CPT(x) = "
        "share of calls sent to the strong model to reach x % of the quality gap.",
        "",
        *_table(
            ["router", "APGR", "CPT(50)", "CPT(80)", "CPT(95)"],
            [
                row("mixroute difficulty router", r),
                row("random (mean of seeds)", r["baselines"]["random"]),
                row("prompt length", r["baselines"]["length"]),
            ],
        ),
        "",
    ]
    return out


def _scaling(r: dict[str, Any] | None) -> list[str]:
    out = ["## 4. Scaling (`bench/scaling.py`)", ""]
    if r is None:
        return [*out, "_not run (no `bench/results/scaling.json`)_", ""]
    table = [
        [
            str(x["concurrency"]),
            x["model"],
            _f(x["rps"], ".0f"),
            _f(x["p50_ms"]),
            _f(x["p99_ms"]),
            str(x["errors"]),
        ]
        for x in r["curve"]
    ]
    mem = ", ".join(f"{m['requests']}: {m['rss_mib']}" for m in r["memory"])
    out += [
        "mixroute (one process, pinned to one CPU) before the fake upstream; "
        "whole answers; `small` = named model, `auto` = classified.",
        "",
        *_table(["concurrency", "model", "req/s", "p50 ms", "p99 ms", "errors"], table),
        "",
        f"RSS of the idle gateway before any request: {r.get('rss_idle_mib')} "
        "MiB. Then, after the curve above, by requests served (whole/stream, "
        f"named/auto, c=32), in MiB: {mem}. "
        f"Growth after warm-up: {r.get('rss_growth_after_warmup_mib')} MiB "
        f"({r.get('memory_errors', 0)} errors).",
        "",
    ]
    return out


def _guards(r: dict[str, Any] | None) -> list[str]:
    if r is None:
        return []
    out = ["## Guards (`bench/guards.py`)", ""]
    for key in ("pii", "pii_handwritten"):
        x = r.get(key)
        if x:
            out.append(f"- {key}: {x.get('rows')} rows, overall {x.get('overall')}")
    jb = r.get("jailbreak")
    if jb:
        out.append(
            f"- jailbreak (held-out {jb.get('rows_test')} rows): {jb.get('combined')}"
        )
    return [*out, ""]


def _run_meta(meta: dict[str, Any] | None) -> list[str]:
    if not meta:
        return []
    s = meta["setup"]
    lines = [
        "## This run",
        "",
        f"`make bench` took {meta['run_seconds']} s (cap 600 s), after a set-up "
        f"check of {s['setup_seconds_this_run']} s. One-time peer installs, not "
        f"counted: LiteLLM {s['litellm_install_seconds']} s, semantic-router "
        f"{s['semrouter_install_seconds']} s.",
        "",
        *_table(
            ["bench", "status", "seconds"],
            [[n, v["status"], str(v["seconds"])] for n, v in meta["steps"].items()],
        ),
        "",
    ]
    return lines


def summary() -> str:
    """The Markdown summary of every result file present."""
    meta = _load("run")
    parts = [
        "# mixroute benchmarks: latest run",
        "",
        *_machine(meta),
        *_run_meta(meta),
        *_overhead(_load("peers_overhead")),
        *_classification(_load("classify"), _load("semrouter")),
        *_costq(_load("costq")),
        *_scaling(_load("scaling")),
        *_guards(_load("guards")),
    ]
    return "\n".join(parts)


INTRO = """\
# Benchmarks

mixroute beside what its users would pick instead, measured in one run on one
machine: `make bench` (bounded at 10 minutes on 2 cores, peer installs apart).
Absolute times on a shared machine mean little; the ratios taken within the
same run are what count. Everything talks to 127.0.0.1 only.

## Commands

    make bench                                  # everything below, then this file
    python -m bench.report --run --only NAME    # one bench (names in "This run")
    python -m bench.peers.litellm_overhead      # overhead: direct, bare proxy,
                                                #   mixroute named/auto, LiteLLM
    python -m bench.peers.semrouter             # semantic-router + scikit-learn
    python -m bench.classify                    # mixroute's classifier
    python -m bench.costq                       # cost-quality
    python -m bench.scaling                     # concurrency curve, RSS
    python -m bench.report                      # rewrite the summary only

`python -m bench.overhead` (direct, bare proxy, mixroute named/auto, with its
own checks and larger samples) is not part of `make bench`: the LiteLLM run
above measures the same four targets, plus LiteLLM, in one run.

Peers live in their own virtual envs under `.bench-venv/` (git-ignored),
created on first use with pinned versions: `litellm[proxy]==1.106.12` (the
newest release whose `[proxy]` extra installs from PyPI here: 1.108–1.110 pin
`litellm-proxy`, `litellm-proxy-extras` or `litellm-enterprise` releases the
index does not serve) and `semantic-router==1.1.1` with onnxruntime,
tokenizers and scikit-learn. LiteLLM runs with `LITELLM_LOCAL_MODEL_COST_MAP=True`,
`LITELLM_TELEMETRY=False`, `telemetry: false`, no database and, like mixroute
and the bare proxy here, no client auth (its
`dangerously_permit_weak_or_unset_master_key`, on loopback only).

The classification and cost-quality benches need `../shared/eval` (the
project's machines and CI have it, users' machines do not); without it they
print `skipped` and the summary says so. Holdout files are only measured on.

Raw numbers: `bench/results/*.json` (git-ignored); the same summary as below:
`bench/results/SUMMARY.md`.

"""


def main(argv: list[str] | None = None) -> None:
    """Optionally run the suite, then write SUMMARY.md and BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="store_true", help="run the benches first")
    parser.add_argument("--only", action="append", default=[], help="bench name")
    parser.add_argument(
        "--no-benchmarks-md", action="store_true", help="leave BENCHMARKS.md alone"
    )
    args = parser.parse_args(argv if argv is not None else [])
    if args.run:
        run_all(set(args.only))
    text = summary()
    RESULTS.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(text + "\n")
    if not args.no_benchmarks_md:
        body = text.split("\n", 2)[2]  # drop the summary's own title
        BENCHMARKS.write_text(INTRO + "# Latest figures\n\n" + body + "\n")
    print(f"wrote {SUMMARY}" + ("" if args.no_benchmarks_md else f" and {BENCHMARKS}"))


if __name__ == "__main__":
    main(sys.argv[1:])
