"""Fitting a scorer with numpy only: TF-IDF terms, logistic regression, Platt
calibration and the knob table from out-of-fold scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mixroute.classify.difficulty.metrics import cost_quality_curve
from mixroute.classify.difficulty.scorer import (
    GRID,
    N_DENSE,
    DifficultyError,
    DifficultyScorer,
    FloatArray,
    dense_features,
    sigmoid,
    sparse_row,
    terms,
)


@dataclass(frozen=True)
class TrainSettings:
    """Knobs of ``fit_scorer``; the defaults built the shipped artifact."""

    min_df: int = 2
    max_terms: int = 60_000
    l2: float = 3e-5
    iterations: int = 800
    folds: int = 5
    target: str = "needs_strong"  # or "weak_fails"
    seed: int = 0
    # Whether one strong or weak answer was right is a noisy draw; the topic's
    # rate is a steadier target. Each label moves this far toward the mean of
    # its group (``subject``, else ``source``) in the training rows.
    smoothing: float = 0.9


def labels(rows: Sequence[Mapping[str, Any]], target: str) -> FloatArray:
    """1.0 where a row is hard under ``target``: ``needs_strong`` (the weak model
    failed and the strong one succeeded) or ``weak_fails``."""
    weak = np.array([bool(r["weak_correct"]) for r in rows])
    strong = np.array([bool(r["strong_correct"]) for r in rows])
    if target == "needs_strong":
        hard: npt.NDArray[np.bool_] = ~weak & strong
    elif target == "weak_fails":
        hard = ~weak
    else:
        raise DifficultyError(f'unknown difficulty target "{target}"')
    return hard.astype(np.float64)


@dataclass(frozen=True)
class _Design:
    """Training texts as a CSR TF-IDF matrix plus the structural block."""

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int64]
    data: FloatArray
    dense: FloatArray
    n_terms: int

    def take(self, rows: npt.NDArray[np.int64]) -> _Design:
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        pick = np.concatenate(
            [np.arange(s, e) for s, e in zip(starts, ends, strict=True)]
        )
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return _Design(
            indptr, self.indices[pick], self.data[pick], self.dense[rows], self.n_terms
        )

    def matvec(self, w: FloatArray, d: FloatArray) -> FloatArray:
        prod = self.data * w[self.indices]
        sums = np.add.reduceat(np.concatenate([prod, [0.0]]), self.indptr[:-1])
        # reduceat repeats the next value for an empty row: zero those.
        sums[self.indptr[:-1] == self.indptr[1:]] = 0.0
        return sums + self.dense @ d

    def rmatvec(self, g: FloatArray) -> tuple[FloatArray, FloatArray]:
        per_entry = np.repeat(g, np.diff(self.indptr))
        gw = np.bincount(
            self.indices, weights=self.data * per_entry, minlength=self.n_terms
        ).astype(np.float64)
        return gw, self.dense.T @ g


def build_vocabulary(
    texts: Sequence[str], min_df: int, max_terms: int
) -> tuple[dict[str, int], FloatArray]:
    """Terms in at least ``min_df`` texts (the ``max_terms`` most frequent) and
    their smoothed IDF."""
    df: dict[str, int] = {}
    for t in texts:
        for term in set(terms(t)):
            df[term] = df.get(term, 0) + 1
    kept = sorted((t for t, c in df.items() if c >= min_df), key=lambda t: (-df[t], t))
    kept = kept[:max_terms]
    n = len(texts)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in kept])
    return {t: i for i, t in enumerate(kept)}, idf


def _design(texts: Sequence[str], vocab: Mapping[str, int], idf: FloatArray) -> _Design:
    indptr = [0]
    idx_parts: list[npt.NDArray[np.int64]] = []
    val_parts: list[FloatArray] = []
    for t in texts:
        idx, val = sparse_row(t, vocab, idf)
        idx_parts.append(idx)
        val_parts.append(val)
        indptr.append(indptr[-1] + len(idx))
    return _Design(
        np.array(indptr, dtype=np.int64),
        np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64),
        np.concatenate(val_parts) if val_parts else np.zeros(0),
        np.array([dense_features(t) for t in texts]).reshape(len(texts), N_DENSE),
        len(vocab),
    )


def _fit_logistic(
    x: _Design, y: FloatArray, l2: float, iterations: int
) -> tuple[FloatArray, FloatArray, float]:
    """L2-regularised logistic regression by Nesterov-accelerated gradient
    descent; rows are unit-norm, so a fixed step of 1/L converges."""
    n = len(y)
    w, d, b = (
        np.zeros(x.n_terms),
        np.zeros(N_DENSE),
        float(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6))),
    )
    vw, vd, vb = w.copy(), d.copy(), b
    step = 1.0 / (0.25 * _top_eigenvalue(x) + l2)
    for k in range(iterations):
        z = x.matvec(vw, vd) + vb
        g = (sigmoid(z) - y) / n
        gw, gd = x.rmatvec(g)
        gw += l2 * vw
        gd += l2 * vd
        nw, nd, nb = vw - step * gw, vd - step * gd, vb - step * float(g.sum())
        mom = k / (k + 3)
        vw, vd, vb = nw + mom * (nw - w), nd + mom * (nd - d), nb + mom * (nb - b)
        w, d, b = nw, nd, nb
    return w, d, b


def _top_eigenvalue(x: _Design) -> float:
    """Largest eigenvalue of XᵀX/n (bias column included), by power iteration:
    the Lipschitz constant of the mean log-loss gradient is a quarter of it."""
    n = len(x.indptr) - 1
    w, d, b = np.ones(x.n_terms), np.ones(N_DENSE), 1.0
    lam = 1.0
    for _ in range(30):
        z = x.matvec(w, d) + b
        gw, gd = x.rmatvec(z / n)
        gb = float(z.sum()) / n
        lam = math.sqrt(float(gw @ gw + gd @ gd) + gb * gb)
        w, d, b = gw / lam, gd / lam, gb / lam
    return 1.05 * lam


def smooth_labels(
    y: FloatArray, groups: Sequence[str], train: npt.NDArray[np.int64], amount: float
) -> FloatArray:
    """``y`` moved ``amount`` toward each group's mean over the ``train`` rows
    (groups unseen there keep their own label)."""
    if amount <= 0.0:
        return y
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for i in train:
        sums[groups[i]] = sums.get(groups[i], 0.0) + float(y[i])
        counts[groups[i]] = counts.get(groups[i], 0) + 1
    means = np.array(
        [sums[g] / counts[g] if g in counts else y[i] for i, g in enumerate(groups)]
    )
    return (1.0 - amount) * y + amount * means


def _group_of(row: Mapping[str, Any]) -> str:
    return str(row.get("subject") or row.get("source") or "")


def _fit_platt(z: FloatArray, y: FloatArray) -> tuple[float, float]:
    """The (a, b) of ``sigmoid(a·z + b)`` that minimises log-loss (Newton steps)."""
    a, b = 1.0, 0.0
    for _ in range(50):
        p = sigmoid(a * z + b)
        r = p - y
        s = p * (1 - p) + 1e-9
        grad = np.array([r @ z, r.sum()])
        hess = np.array([[s @ (z * z), s @ z], [s @ z, s.sum()]]) + 1e-6 * np.eye(2)
        da, db = np.linalg.solve(hess, grad)
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return float(a), float(b)


def fit_scorer(
    rows: Sequence[Mapping[str, Any]], settings: TrainSettings | None = None
) -> tuple[DifficultyScorer, FloatArray]:
    """Fit a scorer on rows with ``prompt``, ``weak_correct``, ``strong_correct``.

    Returns the scorer (fitted on every row) and the calibrated out-of-fold
    scores of the rows, from which its share thresholds and knob curve come.
    """
    cfg = settings or TrainSettings()
    if len(rows) < 4 * cfg.folds:
        raise DifficultyError(
            f"difficulty training needs at least {4 * cfg.folds} labelled rows, "
            f"got {len(rows)}"
        )
    texts = [str(r["prompt"]) for r in rows]
    y = labels(rows, cfg.target)
    groups = [_group_of(r) for r in rows]
    folds = np.random.default_rng(cfg.seed).permutation(len(rows)) % cfg.folds

    # One vocabulary for every fold: IDF sees the held-out texts (no labels),
    # which keeps cross-validation to a single pass over the text.
    vocab, idf = build_vocabulary(texts, cfg.min_df, cfg.max_terms)
    x = _design(texts, vocab, idf)
    oof = np.zeros(len(rows))
    for f in range(cfg.folds):
        tr = np.flatnonzero(folds != f)
        te = np.flatnonzero(folds == f)
        yt = smooth_labels(y, groups, tr, cfg.smoothing)[tr]
        w, d, b = _fit_logistic(x.take(tr), yt, cfg.l2, cfg.iterations)
        oof[te] = x.take(te).matvec(w, d) + b
    calibration = _fit_platt(oof, y)
    oof_scores = np.clip(sigmoid(calibration[0] * oof + calibration[1]), 1e-6, 1 - 1e-6)

    # The knob's table: thresholds and gap recovered per whole percent of share.
    weak = np.array([bool(r["weak_correct"]) for r in rows])
    strong = np.array([bool(r["strong_correct"]) for r in rows])
    curve = cost_quality_curve(oof_scores, weak, strong, seed=cfg.seed)
    ks = [curve.at_share(s) for s in np.linspace(0.0, 1.0, GRID)]
    share_thresholds = np.array([curve.thresholds[k] for k in ks])
    share_thresholds[-1] = 0.0
    share_pgr = np.maximum.accumulate(np.clip(curve.pgr[ks], 0.0, None))

    everything = np.arange(len(rows))
    w, d, b = _fit_logistic(
        x, smooth_labels(y, groups, everything, cfg.smoothing), cfg.l2, cfg.iterations
    )
    scorer = DifficultyScorer(
        vocab=vocab,
        idf=idf,
        word_weights=w,
        dense_weights=d,
        bias=b,
        calibration=calibration,
        share_thresholds=share_thresholds,
        share_pgr=share_pgr,
        provenance=(
            f"target={cfg.target} smoothing={cfg.smoothing} rows={len(rows)} "
            f"terms={len(vocab)} l2={cfg.l2} "
            f"oof_apgr={curve.apgr():.4f} "
            f"oof_share_for_95pct={curve.share_for_quality(0.95):.4f}"
        ),
    )
    return scorer, oof_scores
