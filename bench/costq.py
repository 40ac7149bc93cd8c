"""Cost-quality routing on costq-holdout: mixroute's difficulty scorer, a random
router (mean of several seeds) and a prompt-length ranking.

``python -m bench.costq`` (or ``main()``) measures the shipped scorer's text
path (what the gateway's cost-quality routing runs) on
``../shared/eval/costq-holdout.jsonl``, prints a table and writes
``bench/results/costq.json``; ``--embedding`` measures the embedding path
instead, each prompt first embedded by the ONNX encoder inside the timed call
(written to ``costq-embedding.json``). ``python -m bench.costq train`` rebuilds
the shipped artifact from ``costq-dev.jsonl`` (the only file it is fitted on),
embedding the dev prompts once and caching them in ``--cache``. The holdout
file is read once, to measure; nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mixroute.classify.difficulty import (
    BUILTIN_PATH,
    EMB_DIM,
    EMB_TOKENS,
    DifficultyScorer,
    cost_quality_curve,
    curve_report,
    embed_prompts,
    evaluate_scorer,
    fit_scorer,
)

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
RESULTS = ROOT / "bench" / "results" / "costq.json"
CACHE = Path(tempfile.gettempdir()) / "mixroute-costq-dev-embeddings"
TARGETS = {"strong_share_for_95pct_quality": 0.45, "apgr": 0.65, "p50_ms": 5.0}


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _encoder() -> Any:
    from mixroute.classify.encoder import OnnxEncoder

    return OnnxEncoder(threads=1)


def dev_embeddings(rows: list[dict[str, Any]], cache: Path) -> np.ndarray:
    """The embedding head's input for every row, cached under ``cache`` by a
    hash of the prompts (encoding 9k prompts takes minutes on 2 cores)."""
    digest = hashlib.sha256(
        "\x00".join([str(EMB_TOKENS), *(str(r["prompt"]) for r in rows)]).encode()
    ).hexdigest()[:16]
    path = cache / f"{digest}.npy"
    if path.is_file():
        emb: np.ndarray = np.load(path)
        if emb.shape == (len(rows), EMB_DIM):
            return emb
    emb = embed_prompts(_encoder(), [str(r["prompt"]) for r in rows])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, emb.astype(np.float32))
    return emb


def train(dev: Path, out: Path, cache: Path = CACHE) -> None:
    """Fit the scorer (embedding head included) on ``dev``; write it to ``out``."""
    rows = _rows(dev)
    scorer, _ = fit_scorer(rows, embeddings=dev_embeddings(rows, cache))
    out.parent.mkdir(parents=True, exist_ok=True)
    scorer.save(out)
    print(f"{out}: {scorer.provenance}")


def measure(holdout: Path, embedding: bool = False) -> dict[str, Any]:
    """The report for the shipped scorer on ``holdout``, per source as well
    (the text path, or with ``embedding`` the embedding path)."""
    scorer = DifficultyScorer.load_builtin()
    if scorer is None:
        sys.exit(f"no artifact at {BUILTIN_PATH}; run `python -m bench.costq train`")
    if embedding and not scorer.uses_embedding:
        sys.exit(f"the artifact at {BUILTIN_PATH} has no embedding head")
    encoder = _encoder() if embedding else None
    rows = _rows(holdout)
    report, scores = evaluate_scorer(scorer, rows, encoder)
    report["file"] = holdout.name
    report["per_source"] = {}
    weak = [bool(r["weak_correct"]) for r in rows]
    strong = [bool(r["strong_correct"]) for r in rows]
    for source in sorted({str(r.get("source")) for r in rows}):
        # The scores already computed, so each prompt is embedded once.
        idx = [i for i, r in enumerate(rows) if str(r.get("source")) == source]
        sub = curve_report(
            cost_quality_curve(
                scores[idx], [weak[i] for i in idx], [strong[i] for i in idx]
            )
        )
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
    print(_row(f"mixroute ({report['path']} path)", report))
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
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--embedding",
        action="store_true",
        help="measure the embedding path (an encoder call per prompt, timed)",
    )
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv or [])
    if args.action == "train":
        train(args.dev, BUILTIN_PATH, args.cache)
        return
    out = args.out or (
        RESULTS.with_name("costq-embedding.json") if args.embedding else RESULTS
    )
    if not args.holdout.exists():
        # ../shared is on the project's machines and in CI, not on users'.
        print(f"skipped: {args.holdout} is not here (../shared/eval is absent)")
        return
    report = measure(args.holdout, args.embedding)
    print_table(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
