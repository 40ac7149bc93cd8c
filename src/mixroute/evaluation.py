"""``mixroute eval``: measure the classifier on labelled prompts.

Rows with ``prompt`` and ``category`` get routing metrics (accuracy, macro-F1,
per-category precision/recall/F1, confusion matrix, ECE, per-source accuracy,
real-chat accuracy, single-query latency). Rows with ``weak_correct`` /
``strong_correct`` and no ``category`` are cost-quality rows, handed to
``mixroute.classify.difficulty.run_costq_eval``.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixroute.classify.base import Classification
from mixroute.classify.linear import expected_calibration_error
from mixroute.classify.train import read_labelled
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import MixrouteError

#: Sources of real chat prompts (the rest are templated benchmarks).
REAL_CHAT_SOURCES = frozenset({"arena_hard_v2", "mt_bench", "vicuna_bench"})


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def routing_metrics(
    rows: Sequence[dict[str, Any]], results: Sequence[Classification]
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-category/per-source numbers, confusion and ECE."""
    gold = [str(r["category"]) for r in rows]
    pred = [c.route for c in results]
    correct = np.array([g == p for g, p in zip(gold, pred, strict=True)])
    labels = sorted(set(gold))
    per_category: dict[str, dict[str, float]] = {}
    for label in labels:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == p == label)
        n_pred = sum(1 for p in pred if p == label)
        n_gold = sum(1 for g in gold if g == label)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        per_category[label] = {
            "precision": precision,
            "recall": recall,
            "f1": _f1(precision, recall),
            "support": n_gold,
        }
    confusion: dict[str, dict[str, int]] = {g: {} for g in labels}
    for g, p in zip(gold, pred, strict=True):
        confusion[g][p] = confusion[g].get(p, 0) + 1
    sources = [str(r.get("source") or "unknown") for r in rows]
    per_source = {
        s: {
            "accuracy": float(correct[[x == s for x in sources]].mean()),
            "n": n,
        }
        for s, n in sorted(Counter(sources).items())
    }
    real = np.array([s in REAL_CHAT_SOURCES for s in sources])
    confidence = np.array([c.confidence for c in results])
    return {
        "n": len(rows),
        "accuracy": float(correct.mean()),
        "macro_f1": float(np.mean([m["f1"] for m in per_category.values()])),
        "real_chat_accuracy": float(correct[real].mean()) if real.any() else None,
        "real_chat_n": int(real.sum()),
        "per_category": per_category,
        "per_source": per_source,
        "confusion": confusion,
        "ece": expected_calibration_error(confidence, correct.astype(float)),
        "mean_confidence": float(confidence.mean()),
    }


def classify_timed(
    classifier: Any, prompts: Sequence[str], *, show_progress: bool
) -> tuple[list[Classification], list[float], list[float]]:
    """Classify one prompt at a time; return results, wall-clock ms and CPU ms.

    CPU time is this thread's (the encoder runs on the calling thread with
    ``threads: 1``); it shows the cost on an idle machine when others share it.
    """
    results: list[Classification] = []
    wall: list[float] = []
    cpu: list[float] = []

    def one(prompt: str) -> None:
        started, started_cpu = time.perf_counter(), time.thread_time()
        results.append(classifier.classify(prompt))
        cpu.append((time.thread_time() - started_cpu) * 1000)
        wall.append((time.perf_counter() - started) * 1000)

    if show_progress:
        from mixroute.progress import progress_iter

        # The shared bar: on stderr, and only when stderr is a terminal.
        for prompt in progress_iter(prompts, "classifying"):
            one(prompt)
    else:
        for prompt in prompts:
            one(prompt)
    return results, wall, cpu


def latency_summary(ms: Sequence[float]) -> dict[str, float]:
    """p50, p99 and mean of a list of milliseconds."""
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(np.mean(ms)),
    }


def _check_rows(rows: list[dict[str, Any]], path: Path) -> None:
    for n, row in enumerate(rows, 1):
        if not isinstance(row.get("prompt"), str):
            raise MixrouteError(f"{path}: row {n} has no string field 'prompt'")
        if not isinstance(row.get("category"), str):
            raise MixrouteError(f"{path}: row {n} has no string field 'category'")


def _print_report(m: dict[str, Any], path: Path) -> None:
    out = sys.stdout.write
    out(f"{path}: {m['n']} prompts\n")
    out(f"accuracy {m['accuracy']:.3f}   macro-F1 {m['macro_f1']:.3f}   ")
    if m["real_chat_accuracy"] is not None:
        out(f"real-chat {m['real_chat_accuracy']:.3f} (n={m['real_chat_n']})   ")
    out(f"ECE {m['ece']:.3f}\n")
    lat = m["latency_ms"]
    cpu = m["latency_cpu_ms"]
    out(
        f"latency per query: p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms "
        f"(CPU p50 {cpu['p50']:.2f} ms, p99 {cpu['p99']:.2f} ms)\n\n"
    )
    out(f"{'category':<16}{'prec':>7}{'recall':>8}{'F1':>7}{'n':>6}\n")
    for name, c in m["per_category"].items():
        out(
            f"{name:<16}{c['precision']:>7.3f}{c['recall']:>8.3f}{c['f1']:>7.3f}"
            f"{c['support']:>6}\n"
        )
    out("\nper source:\n")
    for name, s in m["per_source"].items():
        out(f"  {name:<22}{s['accuracy']:>7.3f}  n={s['n']}\n")
    labels = list(m["confusion"])
    cols = sorted({p for row in m["confusion"].values() for p in row} | set(labels))
    out("\nconfusion (rows: true, columns: predicted):\n")
    out(" " * 14 + "".join(f"{c[:6]:>7}" for c in cols) + "\n")
    for g in labels:
        row = m["confusion"][g]
        out(f"{g[:13]:<14}" + "".join(f"{row.get(c, 0):>7}" for c in cols) + "\n")


def run_eval(
    config: MixrouteConfig, path: Path, *, as_json: bool, predictions: Path | None
) -> None:
    """Evaluate on ``path`` and print a report (or one JSON object with ``as_json``)."""
    rows = read_labelled(path)
    if all(
        "category" not in r and {"weak_correct", "strong_correct"} & r.keys()
        for r in rows
    ):
        try:
            module = importlib.import_module("mixroute.classify.difficulty")
        except ImportError:
            module = None
        run_costq_eval = getattr(module, "run_costq_eval", None)
        if run_costq_eval is None:
            raise MixrouteError(
                f"{path} holds cost-quality rows (weak_correct/strong_correct), but "
                "the cost-quality evaluation (mixroute.classify.difficulty) is not "
                "installed"
            )
        run_costq_eval(config, rows, as_json=as_json, predictions=predictions)
        return
    _check_rows(rows, path)

    from mixroute.classify import build_classifier

    classifier = build_classifier(config)
    prompts = [str(r["prompt"]) for r in rows]
    # Warm the process (first-call allocations, the encoder's background load)
    # so the first row does not carry start-up costs.
    classifier.classify("warm-up query " + str(time.time()))
    classifier.embed(["warm-up"])
    results, wall, cpu = classify_timed(
        classifier, prompts, show_progress=not as_json and sys.stderr.isatty()
    )
    metrics = routing_metrics(rows, results)
    metrics["latency_ms"] = latency_summary(wall)
    metrics["latency_cpu_ms"] = latency_summary(cpu)
    metrics["backend"] = classifier.backend

    if predictions is not None:
        try:
            with predictions.open("w", encoding="utf-8") as f:
                for n, (row, c) in enumerate(zip(rows, results, strict=True), 1):
                    record = {
                        "id": row.get("id", n),
                        "category": c.route,
                        "confidence": round(c.confidence, 6),
                        "tier": c.tier,
                        "hard_probability": round(c.hard_probability, 6),
                    }
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise MixrouteError(
                f"cannot write predictions to {predictions}: {exc}"
            ) from None
    if as_json:
        sys.stdout.write(json.dumps(metrics) + "\n")
    else:
        _print_report(metrics, path)
