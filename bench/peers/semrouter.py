"""Classification beside aurelio's semantic-router, with the same encoder.

    python -m bench.peers.semrouter

Needs ``../shared/eval/routing-holdout.jsonl`` (present on the project's
machines and CI, not on users'): without it the bench says so and skips.
semantic-router (pinned) runs in its own venv, ``.bench-venv/semrouter``,
created on first use. Its routes are mixroute's default config's routes with
the same utterances, and its encoder is mixroute's MiniLM int8 ONNX file and
tokenizer wrapped as a semantic-router ``DenseEncoder``
(bench/peers/semrouter_run.py), so only the routing method differs. The
library's default ``IndexedRouter`` settings are used, with no threshold (a
route is always chosen), which is the most favourable setting for its
accuracy. A scikit-learn TF-IDF + logistic-regression baseline trained on
``routing-dev.jsonl`` runs in the same venv. Metrics (accuracy, macro-F1,
per-source accuracy, single-query latency p50/p99 on one thread) are computed
here with mixroute's own ``routing_metrics`` so every router is scored alike;
mixroute's own row is bench/classify.py's ``classify.json``. Writes
``bench/results/semrouter.json``. The holdout file is only measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.peers import venv

ROOT = Path(__file__).resolve().parent.parent.parent
EVAL = ROOT.parent / "shared" / "eval"
RESULTS = ROOT / "bench" / "results" / "semrouter.json"
REQUIREMENTS = [
    "semantic-router==1.1.1",
    "onnxruntime==1.32.0",
    "tokenizers==0.23.3",
    "scikit-learn==1.9.1",
]


@dataclass(frozen=True)
class _Pick:
    route: str
    confidence: float


def _rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def _metrics(
    rows: list[dict[str, Any]], pred: list[str | None], conf: list[float], ms: list
) -> dict[str, Any]:
    from mixroute.evaluation import routing_metrics

    picks = [_Pick(p or "(none)", c) for p, c in zip(pred, conf, strict=True)]
    m = routing_metrics(rows, picks)
    m.pop("confusion", None)
    m["latency_ms"] = {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(np.mean(ms)),
    }
    return m


def main(argv: list[str] | None = None) -> None:
    """Run semantic-router and the scikit-learn baseline; write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holdout", type=Path, default=EVAL / "routing-holdout.jsonl")
    parser.add_argument("--dev", type=Path, default=EVAL / "routing-dev.jsonl")
    args = parser.parse_args(argv if argv is not None else [])
    if not args.holdout.exists():
        print(f"skipped: {args.holdout} not found (it ships with ../shared only)")
        return

    from importlib import resources

    from mixroute.classify.encoder import model_file, verify_model
    from mixroute.config import load_config

    python = venv.ensure("semrouter", REQUIREMENTS)
    config = load_config(None)
    model = model_file()
    verify_model(model)
    tokenizer = resources.files("mixroute.classify") / "data" / "tokenizer.json"
    spec = {
        "routes": {r.name: list(r.utterances) for r in config.routes if r.utterances},
        "model": str(model),
        "tokenizer": str(tokenizer),
        "holdout": str(args.holdout),
        "dev": str(args.dev),
    }
    with tempfile.TemporaryDirectory(prefix="mixroute-semrouter-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        env = {
            **os.environ,
            "ORT_DISABLE_TELEMETRY": "1",
            "TOKENIZERS_PARALLELISM": "0",
        }
        subprocess.run(
            [
                str(python),
                str(Path(__file__).with_name("semrouter_run.py")),
                str(spec_file),
                str(out_file),
            ],
            check=True,
            env=env,
        )
        raw = json.loads(out_file.read_text())

    rows = _rows(args.holdout)
    sr = raw["semantic_router"]
    report: dict[str, Any] = {
        "semantic_router_version": venv.version(python, "semantic-router"),
        "semantic_router_install_seconds": venv.install_seconds("semrouter"),
        "routes": len(spec["routes"]),
        "utterances": sum(len(u) for u in spec["routes"].values()),
        "semantic_router": {
            **_metrics(rows, sr["pred"], sr["confidence"], sr["ms"]),
            "settings": "IndexedRouter defaults (top_k=5, mean), no threshold",
            "build_s": round(sr["build_s"], 3),
            "sample_router_p50_ms": float(np.percentile(sr["pair_router_ms"], 50)),
            "sample_encoder_only_p50_ms": float(
                np.percentile(sr["pair_encoder_ms"], 50)
            ),
        },
    }
    if "sklearn_tfidf_lr" in raw:
        b = raw["sklearn_tfidf_lr"]
        report["sklearn_tfidf_lr"] = _metrics(rows, b["pred"], b["confidence"], b["ms"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for name in ("semantic_router", "sklearn_tfidf_lr"):
        if name in report:
            m = report[name]
            ms = m["latency_ms"]
            print(
                f"{name}: accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}  "
                f"p50 {ms['p50']:.2f} ms  p99 {ms['p99']:.2f} ms"
            )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
