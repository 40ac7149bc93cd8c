"""Benchmark of the prompt classifier on the routing holdout set.

    python -m bench classify            # or: python bench/classify.py [--holdout F]

Prints, for the embedded default config on one thread: holdout accuracy,
macro-F1, real-chat accuracy, per-source accuracy, ECE, single-query latency
p50/p99 and cold start (a fresh process: import, build, first answer); the
same for a plain TF-IDF + logistic-regression baseline trained on the dev file
in this run; and typo / non-English robustness on the variant sets in
tests/classify/data/. Writes everything to bench/results/classify.json.

The holdout file is only measured here, never trained or tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT.parent / "shared" / "eval"
VARIANTS = ROOT / "tests" / "classify" / "data"
RESULTS = ROOT / "bench" / "results" / "classify.json"

COLD_START = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
from mixroute.config import load_config
from mixroute.classify import build_classifier
c = build_classifier(load_config(None))
c.classify("How do I reverse a linked list in C?")
ready, ready_cpu = time.perf_counter() - t0, time.process_time() - c0
c.embed(["the encoder has loaded once this returns"])
print(json.dumps({"ready_s": ready, "ready_cpu_s": ready_cpu,
                  "encoder_s": time.perf_counter() - t0,
                  "encoder_cpu_s": time.process_time() - c0}))
"""


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().split("\n") if x.strip()]


def _cold_start(runs: int = 3) -> dict[str, float]:
    """Median over fresh processes: import, build, first answer (and encoder)."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", COLD_START],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {k: float(np.median([s[k] for s in samples])) for k in samples[0]}


def _baseline(dev: list[dict[str, object]], holdout: list[dict[str, object]]) -> dict:
    """TF-IDF word+char n-grams + logistic regression, dev → holdout, no extras."""
    from mixroute.classify.linear import fit_softmax
    from mixroute.classify.tfidf import TfidfVectorizer
    from mixroute.evaluation import REAL_CHAT_SOURCES

    texts = [str(r["prompt"]) for r in dev]
    classes = sorted({str(r["category"]) for r in dev})
    y = np.array([classes.index(str(r["category"])) for r in dev])
    vec = TfidfVectorizer.fit(texts, min_df=2)
    model = fit_softmax([vec.transform(texts)], y, len(classes), l2=1e-5, balance=0.0)
    times, pred = [], []
    for r in holdout:
        t = time.perf_counter()
        z = model.logits([vec.transform([str(r["prompt"])])])
        times.append((time.perf_counter() - t) * 1000)
        pred.append(classes[int(z.argmax())])
    gold = [str(r["category"]) for r in holdout]
    ok = np.array([g == p for g, p in zip(gold, pred, strict=True)])
    f1s = []
    for c in sorted(set(gold)):
        tp = sum(g == p == c for g, p in zip(gold, pred, strict=True))
        fp = sum(p == c != g for g, p in zip(gold, pred, strict=True))
        fn = sum(g == c != p for g, p in zip(gold, pred, strict=True))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    real = np.array([r.get("source") in REAL_CHAT_SOURCES for r in holdout])
    return {
        "accuracy": float(ok.mean()),
        "macro_f1": float(np.mean(f1s)),
        "real_chat_accuracy": float(ok[real].mean()),
        "latency_ms": {
            "p50": float(np.percentile(times, 50)),
            "p99": float(np.percentile(times, 99)),
        },
    }


def _variants(classifier: object) -> dict[str, object]:
    """Typo variants must keep their route; non-English ones must not collapse."""
    out: dict[str, object] = {}
    typo_file = VARIANTS / "typos.jsonl"
    if typo_file.exists():
        rows = _rows(typo_file)
        same = [
            classifier.classify(str(r["variant"])).route  # type: ignore[attr-defined]
            == classifier.classify(str(r["prompt"])).route  # type: ignore[attr-defined]
            for r in rows
        ]
        out["typo_same_route"] = float(np.mean(same))
    ml_file = VARIANTS / "multilingual.jsonl"
    if ml_file.exists():
        rows = _rows(ml_file)
        pred = [classifier.classify(str(r["prompt"])).route for r in rows]  # type: ignore[attr-defined]
        out["multilingual_accuracy"] = float(
            np.mean([p == r["category"] for p, r in zip(pred, rows, strict=True)])
        )
        out["multilingual_top_route_share"] = Counter(pred).most_common(1)[0][1] / len(
            pred
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holdout", type=Path, default=EVAL / "routing-holdout.jsonl")
    parser.add_argument("--dev", type=Path, default=EVAL / "routing-dev.jsonl")
    args = parser.parse_args(argv if argv is not None else [])

    from mixroute.classify import build_classifier
    from mixroute.config import load_config
    from mixroute.evaluation import classify_timed, latency_summary, routing_metrics

    if not args.holdout.exists():
        print(f"skipped: {args.holdout} not found")
        return
    holdout = _rows(args.holdout)
    config = load_config(None)
    classifier = build_classifier(config)
    classifier.classify("warm-up")
    classifier.embed(["warm-up"])
    prompts = [str(r["prompt"]) for r in holdout]
    results, wall, cpu = classify_timed(classifier, prompts, show_progress=False)
    m = routing_metrics(holdout, results)
    m["latency_ms"] = latency_summary(wall)
    m["latency_cpu_ms"] = latency_summary(cpu)
    m["load_average"] = list(os.getloadavg())
    m["backend"] = classifier.backend
    m["cold_start_s"] = _cold_start()
    m["variants"] = _variants(classifier)
    if args.dev.exists():
        m["baseline_tfidf_lr"] = _baseline(_rows(args.dev), holdout)

    print(
        f"mixroute ({m['backend']}): accuracy {m['accuracy']:.3f}  macro-F1 "
        f"{m['macro_f1']:.3f}  real-chat {m['real_chat_accuracy']:.3f}  ECE "
        f"{m['ece']:.3f}  p50 {m['latency_ms']['p50']:.2f} ms  p99 "
        f"{m['latency_ms']['p99']:.2f} ms"
    )
    cpu, cold = m["latency_cpu_ms"], m["cold_start_s"]
    print(
        f"  CPU per query p50 {cpu['p50']:.2f} ms  p99 {cpu['p99']:.2f} ms;  cold "
        f"start to first answer {cold['ready_s']:.2f} s wall / "
        f"{cold['ready_cpu_s']:.2f} s CPU, encoder loaded {cold['encoder_s']:.2f} s;"
        "  load average "
        f"{m['load_average'][0]:.1f}"
    )
    for name, s in m["per_source"].items():
        print(f"  {name:<22}{s['accuracy']:.3f}  n={s['n']}")
    if "baseline_tfidf_lr" in m:
        b = m["baseline_tfidf_lr"]
        print(
            f"baseline TF-IDF+LR: accuracy {b['accuracy']:.3f}  macro-F1 "
            f"{b['macro_f1']:.3f}  real-chat {b['real_chat_accuracy']:.3f}  p50 "
            f"{b['latency_ms']['p50']:.2f} ms  p99 {b['latency_ms']['p99']:.2f} ms"
        )
    print(f"variants: {m['variants']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(m, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
