"""Cost-quality routing on costq-holdout: mixroute's difficulty scorer, a random
router (mean of several seeds) and a prompt-length ranking.

``python -m bench.costq`` (or ``main()``) measures the shipped scorer on
``../shared/eval/costq-holdout.jsonl``, prints a table and writes
``bench/results/costq.json``. ``python -m bench.costq train`` rebuilds the
shipped artifact from ``costq-dev.jsonl`` (the only file it is fitted on).
The holdout file is read once, to measure; nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mixroute.classify.difficulty import (
    BUILTIN_PATH,
    DifficultyScorer,
    evaluate_scorer,
    fit_scorer,
)

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
RESULTS = ROOT / "bench" / "results" / "costq.json"
TARGETS = {"strong_share_for_95pct_quality": 0.45, "apgr": 0.65, "p50_ms": 5.0}


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def train(dev: Path, out: Path) -> None:
    """Fit the scorer on ``dev`` and write the artifact to ``out``."""
    rows = _rows(dev)
    scorer, _ = fit_scorer(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    scorer.save(out)
    print(f"{out}: {scorer.provenance}")


def measure(holdout: Path) -> dict[str, Any]:
    """The report for the shipped scorer on ``holdout``, per source as well."""
    scorer = DifficultyScorer.load_builtin()
    if scorer is None:
        sys.exit(f"no artifact at {BUILTIN_PATH}; run `python -m bench.costq train`")
    rows = _rows(holdout)
    report, _ = evaluate_scorer(scorer, rows)
    report["file"] = holdout.name
    report["per_source"] = {}
    for source in sorted({str(r.get("source")) for r in rows}):
        part = [r for r in rows if str(r.get("source")) == source]
        sub, _ = evaluate_scorer(scorer, part)
        del sub["curve"]
        report["per_source"][source] = sub
    report["targets"] = TARGETS
    report["provenance"] = scorer.provenance
    return report


def _row(name: str, r: dict[str, Any]) -> str:
    c = r["cpt"]
    return (
        f"| {name} | {r['apgr']:.3f} | {c['50']:.1%} | {c['80']:.1%} | {c['95']:.1%} "
        f"| {r['strong_share_for_95pct_quality']:.1%} |"
    )


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['file']}: {report['rows']} rows, weak-only quality "
        f"{report['weak_quality']:.3f}, strong-only {report['strong_quality']:.3f}"
    )
    print(
        "| router | APGR | CPT(50) | CPT(80) | CPT(95) | strong share, 95 % quality |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print(_row("mixroute", report))
    print(_row("random (mean of seeds)", report["baselines"]["random"]))
    print(_row("prompt length", report["baselines"]["length"]))
    for source, sub in report["per_source"].items():
        print(_row(f"mixroute, {source} only", sub))
    lat = report["latency_ms"]
    print(f"single-query latency: p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms")


def main(argv: list[str] | None = None) -> None:
    """Measure on the holdout (no arguments), or ``train`` the artifact on dev.
    ``python -m bench`` calls this with no arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action", nargs="?", default="measure", choices=["measure", "train"]
    )
    parser.add_argument("--dev", type=Path, default=EVAL / "costq-dev.jsonl")
    parser.add_argument("--holdout", type=Path, default=EVAL / "costq-holdout.jsonl")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv or [])
    if args.action == "train":
        train(args.dev, BUILTIN_PATH)
        return
    if not args.holdout.exists():
        # ../shared is on the project's machines and in CI, not on users'.
        print(f"skipped: {args.holdout} is not here (../shared/eval is absent)")
        return
    report = measure(args.holdout)
    print_table(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
