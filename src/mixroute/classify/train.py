"""``mixroute train``: fit a calibrated linear head on labelled prompts.

Training rows are the labelled file plus every route's utterances from the
config (so routes with no labelled rows, such as ``brainstorming``, still get
a class). The steps:

1. fit the TF-IDF vocabulary (n-grams in ≥ 2 texts, plus all utterance n-grams);
2. five-fold cross-validation of the text head → out-of-fold logits → the
   temperature that minimises their NLL (calibration);
3. when the encoder loads: the same for the joint head (TF-IDF + embedding of
   the first ``EMB_TOKENS`` tokens), and the cascade threshold: the text-stage
   confidence below which the joint stage runs, chosen on out-of-fold accuracy
   with the joint stage limited to ``MAX_CASCADE_SHARE`` of the rows;
4. refit both heads on all rows and write the artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mixroute.classify.head import Head, save_head
from mixroute.classify.linear import (
    fit_dual,
    fit_softmax,
    fit_temperature,
    gram,
    softmax,
)
from mixroute.classify.text import clean
from mixroute.classify.tfidf import TfidfVectorizer
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import MixrouteError

log = logging.getLogger("mixroute.classify")

EMB_TOKENS = 32
EMB_WEIGHT = 0.5
MAX_CASCADE_SHARE = 0.35
L2 = 1e-5
BALANCE = 0.0
ITERS = 300
FOLDS = 5

Embedder = Callable[[list[str], int], np.ndarray]


def read_labelled(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; ``MixrouteError`` naming the line for any bad one."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise MixrouteError(f"cannot read {path}: {exc}") from None
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MixrouteError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise MixrouteError(f"{path}:{n}: expected a JSON object per line")
        rows.append(row)
    if not rows:
        raise MixrouteError(f"{path} has no rows")
    return rows


def _folds(n: int, k: int) -> np.ndarray:
    return np.random.default_rng(0).permutation(n) % k


def _oof_logits(
    kernel: np.ndarray, y: np.ndarray, n_classes: int, folds: np.ndarray
) -> np.ndarray:
    out = np.zeros((len(y), n_classes))
    for f in np.unique(folds):
        tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        if len(np.unique(y[tr])) < 2:
            continue
        a, b = fit_dual(
            kernel[np.ix_(tr, tr)],
            y[tr],
            n_classes,
            l2=L2,
            balance=BALANCE,
            iters=ITERS,
        )
        out[te] = kernel[np.ix_(te, tr)] @ a + b
    return out


def _cascade_threshold(p_text: np.ndarray, p_joint: np.ndarray, y: np.ndarray) -> float:
    conf = p_text.max(axis=1)
    best_t, best_acc = 0.0, float((p_text.argmax(1) == y).mean())
    for t in np.quantile(conf, np.linspace(0.05, MAX_CASCADE_SHARE, 8)):
        pick = np.where((conf < t)[:, None], p_joint, p_text)
        acc = float((pick.argmax(1) == y).mean())
        if acc > best_acc + 1e-9:
            best_t, best_acc = float(t), acc
    return best_t


def fit_head(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    n_always: int = 0,
    embedder: Embedder | None = None,
    encoder_meta: dict[str, Any] | None = None,
    max_chars: int = 4000,
) -> Head:
    """Fit and calibrate a head on ``texts`` labelled ``labels`` (see module doc).

    The last ``n_always`` texts (the utterances) put all their n-grams in the
    vocabulary even when they occur only once.
    """
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise MixrouteError("training needs at least two different categories")
    y = np.array([classes.index(label) for label in labels])
    texts = [clean(t, max_chars) for t in texts]

    n_labelled = len(texts) - n_always
    vectorizer = TfidfVectorizer.fit(
        texts[:n_labelled], min_df=2, always=texts[n_labelled:]
    )
    x = vectorizer.transform(texts)
    k_text = gram([x])
    folds = _folds(len(y), min(FOLDS, max(2, len(y) // 2)))

    oof_text = _oof_logits(k_text, y, len(classes), folds)
    t_text = fit_temperature(oof_text, y)
    text_model = fit_softmax(
        [x], y, len(classes), l2=L2, balance=BALANCE, iters=ITERS, kernel=k_text
    )
    meta: dict[str, Any] = {
        "cv_accuracy_text": float((oof_text.argmax(1) == y).mean()),
        "rows": len(y),
    }
    head_kwargs: dict[str, Any] = {}
    if embedder is not None:
        emb = embedder(texts, EMB_TOKENS).astype(np.float64) * np.sqrt(EMB_WEIGHT)
        k_joint = k_text + emb @ emb.T
        oof_joint = _oof_logits(k_joint, y, len(classes), folds)
        t_joint = fit_temperature(oof_joint, y)
        joint = fit_softmax(
            [x, emb],
            y,
            len(classes),
            l2=L2,
            balance=BALANCE,
            iters=ITERS,
            kernel=k_joint,
        )
        cascade = _cascade_threshold(
            softmax(oof_text / t_text), softmax(oof_joint / t_joint), y
        )
        n_text = x.n_cols
        head_kwargs = {
            "w_joint_text": joint.weights[:n_text],
            "w_joint_emb": joint.weights[n_text:] * np.float32(np.sqrt(EMB_WEIGHT)),
            "b_joint": joint.bias,
            "t_joint": t_joint,
            "emb_tokens": EMB_TOKENS,
            "cascade_below": cascade,
        }
        meta["cv_accuracy_joint"] = float((oof_joint.argmax(1) == y).mean())
        meta.update(encoder_meta or {})
    return Head(
        classes=tuple(classes),
        vectorizer=vectorizer,
        w_text=text_model.weights,
        b_text=text_model.bias,
        t_text=t_text,
        meta=meta,
        **head_kwargs,
    )


def training_rows(
    config: MixrouteConfig, rows: list[dict[str, Any]], source: str
) -> tuple[list[str], list[str]]:
    """(texts, labels) from labelled rows plus the config's utterances; validated."""
    routes = set(config.route_names)
    texts: list[str] = []
    labels: list[str] = []
    unknown: set[str] = set()
    for n, row in enumerate(rows, 1):
        prompt, category = row.get("prompt"), row.get("category")
        if not isinstance(prompt, str) or not isinstance(category, str):
            raise MixrouteError(
                f"{source}: row {n} needs string fields 'prompt' and 'category'"
            )
        if category not in routes:
            unknown.add(category)
        texts.append(prompt)
        labels.append(category)
    if unknown:
        raise MixrouteError(
            f"{source}: categories {', '.join(sorted(unknown))} are not routes in the "
            f"config (routes: {', '.join(config.route_names)})"
        )
    for route in config.routes:
        for utterance in route.utterances:
            texts.append(utterance)
            labels.append(route.name)
    return texts, labels


def _embed_with_progress(embed: Embedder) -> Embedder:
    # Encoding every training prompt is the long part of `mixroute train`: a
    # bar on a terminal, silence when piped (mixroute.progress).
    from mixroute.progress import progress_batches

    def run(texts: list[str], tokens: int) -> np.ndarray:
        parts = progress_batches(lambda part: embed(part, tokens), texts, "encoding")
        return np.vstack(parts) if parts else embed(texts, tokens)

    return run


def train_head_cli(config: MixrouteConfig, path: Path, out: Path) -> None:
    """Train on ``path`` (JSONL) with the config's utterances; write ``out``."""
    from mixroute.classify import encoder_for

    started = time.perf_counter()
    rows = read_labelled(path)
    texts, labels = training_rows(config, rows, str(path))
    enc = encoder_for(config)
    embedder: Embedder | None = None
    encoder_meta: dict[str, Any] = {}
    if enc is not None:
        embedder = _embed_with_progress(enc.embed_batched)
        encoder_meta = {
            "encoder_id": enc.encoder_id,
            "encoder_sha256": enc.model_sha256,
        }
    head = fit_head(
        texts,
        labels,
        n_always=len(texts) - len(rows),
        embedder=embedder,
        encoder_meta=encoder_meta,
        max_chars=config.classifier.max_chars,
    )
    head.meta.update(
        trained_on=path.name,
        trained_on_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        labelled_rows=len(rows),
        utterance_rows=len(texts) - len(rows),
    )
    meta = save_head(head, out)
    took = time.perf_counter() - started
    print(
        f"wrote {out} ({len(head.classes)} classes, {meta['n_features']} features, "
        f"cv accuracy {meta['cv_accuracy_text']:.3f} text"
        + (f", {meta['cv_accuracy_joint']:.3f} joint" if head.has_joint else "")
        + f", {took:.0f} s); set classifier.head: {out}"
    )
