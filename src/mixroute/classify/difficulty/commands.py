"""``mixroute eval`` and ``mixroute train`` on rows with weak/strong labels."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixroute.classify.difficulty.metrics import cost_quality_curve, curve_report
from mixroute.classify.difficulty.scorer import (
    BUILTIN_PATH,
    EMB_TOKENS,
    DifficultyError,
    DifficultyScorer,
    FloatArray,
    embedding_input,
)
from mixroute.classify.difficulty.training import fit_scorer

log = logging.getLogger("mixroute.classify")

RANDOM_SEEDS = 10
_LABELS = frozenset({"prompt", "weak_correct", "strong_correct"})


def _check_rows(rows: Sequence[Mapping[str, Any]]) -> None:
    for n, r in enumerate(rows, 1):
        for key in ("prompt", "weak_correct", "strong_correct"):
            if key not in r:
                raise DifficultyError(f'row {n} has no "{key}"')
    if not rows:
        raise DifficultyError("no rows with weak_correct and strong_correct")


def baseline_reports(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The same report for a random router (mean of ``RANDOM_SEEDS`` draws) and
    for ranking by prompt length (longer → strong)."""
    weak = [bool(r["weak_correct"]) for r in rows]
    strong = [bool(r["strong_correct"]) for r in rows]
    draws = [
        curve_report(
            cost_quality_curve(
                np.random.default_rng(seed).random(len(rows)), weak, strong, seed
            )
        )
        for seed in range(RANDOM_SEEDS)
    ]
    random_report: dict[str, Any] = {
        "apgr": round(float(np.mean([d["apgr"] for d in draws])), 4),
        "cpt": {
            k: round(float(np.mean([d["cpt"][k] for d in draws])), 4)
            for k in ("50", "80", "95")
        },
        "strong_share_for_95pct_quality": round(
            float(np.mean([d["strong_share_for_95pct_quality"] for d in draws])), 4
        ),
        "seeds": RANDOM_SEEDS,
    }
    lengths = [float(len(str(r["prompt"]))) for r in rows]
    length_report = curve_report(cost_quality_curve(lengths, weak, strong))
    del length_report["curve"]
    return {"random": random_report, "length": length_report}


def embed_prompts(encoder: Any, texts: Sequence[str]) -> FloatArray:
    """The embeddings the scorer's embedding head reads, one row per text
    (``encoder``: a ``classify.encoder.OnnxEncoder``)."""
    inputs = [embedding_input(t) for t in texts]
    out: FloatArray = np.asarray(
        encoder.embed_batched(inputs, EMB_TOKENS), dtype=np.float64
    )
    return out


def evaluate_scorer(
    scorer: DifficultyScorer,
    rows: Sequence[Mapping[str, Any]],
    encoder: Any | None = None,
) -> tuple[dict[str, Any], FloatArray]:
    """The full report (curve, baselines, single-query latency) and the scores.

    Without ``encoder`` this measures the text path, which is what the
    gateway's cost-quality routing runs. With one, each prompt is first
    embedded (one query at a time, timed with the score) and scored by the
    embedding path."""
    _check_rows(rows)
    scores = np.zeros(len(rows))
    timings = np.zeros(len(rows))
    for i, r in enumerate(rows):
        text = str(r["prompt"])
        t0 = time.perf_counter()
        emb = None
        if encoder is not None:
            emb = encoder.embed([embedding_input(text)], EMB_TOKENS)[0]
        scores[i] = scorer.score(text, emb)
        timings[i] = (time.perf_counter() - t0) * 1000.0
    weak = [bool(r["weak_correct"]) for r in rows]
    strong = [bool(r["strong_correct"]) for r in rows]
    report = curve_report(cost_quality_curve(scores, weak, strong))
    report["rows"] = len(rows)
    report["baselines"] = baseline_reports(rows)
    report["latency_ms"] = {
        "p50": round(float(np.percentile(timings, 50)), 4),
        "p99": round(float(np.percentile(timings, 99)), 4),
    }
    report["path"] = "embedding" if encoder is not None else "text"
    return report, scores


def _format_report(report: Mapping[str, Any]) -> str:
    def line(name: str, r: Mapping[str, Any]) -> str:
        c = r["cpt"]
        return (
            f"{name:<10} {r['apgr']:>6.3f} {c['50']:>8.1%} {c['80']:>8.1%} "
            f"{c['95']:>8.1%} {r['strong_share_for_95pct_quality']:>12.1%}"
        )

    out = [
        f"{report['rows']} rows; weak-only quality {report['weak_quality']:.3f}, "
        f"strong-only {report['strong_quality']:.3f}",
        f"{'router':<10} {'APGR':>6} {'CPT(50)':>8} {'CPT(80)':>8} {'CPT(95)':>8} "
        f"{'95% quality':>12}",
        line("mixroute", report),
        line("random", report["baselines"]["random"]),
        line("length", report["baselines"]["length"]),
        f"single-query latency p50 {report['latency_ms']['p50']:.3f} ms, "
        f"p99 {report['latency_ms']['p99']:.3f} ms",
        "",
        f"{'strong share':>12} {'threshold':>10} {'quality':>8} {'gap recovered':>14}",
    ]
    for p in report["curve"]:
        out.append(
            f"{p['strong_share']:>12.0%} {p['threshold']:>10.4f} "
            f"{p['quality']:>8.3f} {p['pgr']:>14.1%}"
        )
    return "\n".join(out)


def run_costq_eval(
    config: object,
    rows: list[dict[str, Any]],
    *,
    as_json: bool,
    predictions: Path | None,
    scorer: DifficultyScorer | None = None,
) -> None:
    """``mixroute eval`` on rows with ``weak_correct``/``strong_correct``: print
    the cost-quality report (JSON with ``as_json``) and, with ``predictions``,
    write ``id`` and ``hard_probability`` per row. ``config`` is accepted for the
    CLI's sake; the scorer is ``scorer`` or the shipped one."""
    del config
    if scorer is None:
        scorer = DifficultyScorer.load_builtin()
    if scorer is None:
        raise DifficultyError(
            f"no difficulty scorer is shipped at {BUILTIN_PATH}; "
            "fit one with `mixroute train FILE.jsonl`"
        )
    report, scores = evaluate_scorer(scorer, rows)
    if predictions is not None:
        with predictions.open("w", encoding="utf-8") as f:
            for i, (r, p) in enumerate(zip(rows, scores, strict=True)):
                rid = r.get("id", i)
                f.write(json.dumps({"id": rid, "hard_probability": round(p, 6)}) + "\n")
    print(json.dumps(report) if as_json else _format_report(report))


def has_difficulty_labels(path: Path) -> bool:
    """Whether ``path`` holds cost-quality rows: its first row has
    ``weak_correct`` and no ``category`` (``mixroute train`` dispatches on it)."""
    try:
        with path.open(encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        row = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(row, dict) and "weak_correct" in row and "category" not in row


def _training_encoder(config: object) -> Any | None:
    """The ONNX encoder for fitting the embedding head, or None on the tfidf
    backend or where it cannot load (the scorer is then fitted without it)."""
    classifier = getattr(config, "classifier", None)
    if getattr(classifier, "backend", "auto") == "tfidf":
        return None
    try:
        from mixroute.classify.encoder import OnnxEncoder

        return OnnxEncoder(threads=getattr(classifier, "threads", 1))
    except Exception as exc:  # optional: the text path trains without it
        log.warning("no encoder for the difficulty embedding head: %s", exc)
        return None


def train_difficulty_cli(config: object, path: Path, out: Path) -> None:
    """``mixroute train`` on rows with ``weak_correct``/``strong_correct``: fit a
    scorer, write it to ``out`` and print what the out-of-fold curve shows.
    Rows missing either label (some feedback rows) are skipped. The embedding
    head is fitted too when the ONNX encoder loads (not on ``backend: tfidf``)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DifficultyError(f"cannot read {path}: {exc}") from None
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DifficultyError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if isinstance(row, dict) and {
            "prompt",
            "weak_correct",
            "strong_correct",
        } <= set(row):
            rows.append(row)
    encoder = _training_encoder(config) if rows else None
    embeddings = (
        embed_prompts(encoder, [str(r["prompt"]) for r in rows])
        if encoder is not None
        else None
    )
    scorer, oof = fit_scorer(rows, embeddings=embeddings)
    scorer.save(out)
    weak = [bool(r["weak_correct"]) for r in rows]
    strong = [bool(r["strong_correct"]) for r in rows]
    curve = cost_quality_curve(oof, weak, strong)
    print(
        f"difficulty scorer: {len(rows)} rows, {len(scorer.vocab)} terms, "
        f"embedding head: {'yes' if scorer.uses_embedding else 'no'} → {out}\n"
        f"out-of-fold: APGR {curve.apgr():.3f}, strong share for 95% of strong "
        f"quality {curve.share_for_quality(0.95):.1%}"
    )
