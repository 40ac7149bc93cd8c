"""Fitting a scorer with numpy only: TF-IDF terms, logistic regression, a naive
Bayes topic model, an optional embedding head, the logistic stacks that combine
them, and the knob table from out-of-fold scores.

Cross-validation is grouped: rows whose question stems are the same after
normalisation (MMLU holds a few near-copies) always share a fold, so a copy's
label cannot leak into the score of its twin.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mixroute.classify.difficulty.metrics import cost_quality_curve
from mixroute.classify.difficulty.scorer import (
    EMB_DIM,
    GRID,
    N_DENSE,
    DifficultyError,
    DifficultyScorer,
    EmbeddingHead,
    FloatArray,
    TopicModel,
    dense_features,
    rate_logit,
    sigmoid,
    softmax_rows,
    sparse_row,
    terms,
)

_OPTIONS_START = re.compile(r"\n[A-J][.)] ")


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
    # The topic model: naive Bayes over the ``topic_terms`` most frequent terms
    # (0: none, the artifact then has the word model alone) with additive
    # smoothing ``topic_alpha``.
    topic_terms: int = 20_000
    topic_alpha: float = 0.01
    # The embedding head (fitted only when embeddings are given).
    emb_l2: float = 0.01
    emb_topic_l2: float = 0.01
    emb_topic_iterations: int = 300
    stack_l2: float = 1e-4


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


def duplicate_groups(texts: Sequence[str]) -> npt.NDArray[np.int64]:
    """One id per distinct question stem (the text before its answer options,
    lower-cased, punctuation dropped): near-copies share an id."""
    ids: dict[str, int] = {}
    out = np.zeros(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        stem = _OPTIONS_START.split(t, maxsplit=1)[0]
        key = " ".join(re.findall(r"[a-z0-9]+", stem.lower()))[:200]
        out[i] = ids.setdefault(key, len(ids))
    return out


def grouped_folds(texts: Sequence[str], folds: int, seed: int) -> npt.NDArray[np.int64]:
    """A fold number per row; rows of one ``duplicate_groups`` id share a fold."""
    groups = duplicate_groups(texts)
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    fold_of = np.random.default_rng(seed).permutation(n_groups) % folds
    out: npt.NDArray[np.int64] = fold_of[groups].astype(np.int64)
    return out


def _topic_ids(groups: Sequence[str]) -> tuple[npt.NDArray[np.int64], list[str]]:
    names = sorted(set(groups))
    index = {g: k for k, g in enumerate(names)}
    return np.array([index[g] for g in groups], dtype=np.int64), names


def _topic_rates(
    y: FloatArray, topics: npt.NDArray[np.int64], train: npt.NDArray[np.int64], k: int
) -> FloatArray:
    """Each topic's mean label over the ``train`` rows (the overall mean for a
    topic with no training row)."""
    counts = np.bincount(topics[train], minlength=k).astype(np.float64)
    sums = np.bincount(topics[train], weights=y[train], minlength=k)
    overall = float(y[train].mean())
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)


def _fit_topic(
    x: _Design,
    topics: npt.NDArray[np.int64],
    y: FloatArray,
    train: npt.NDArray[np.int64],
    n_topics: int,
    n_terms: int,
    alpha: float,
) -> TopicModel:
    """Multinomial naive Bayes on the TF-IDF weights of the first ``n_terms``
    terms of the ``train`` rows."""
    sub = x.take(train)
    rows = np.repeat(topics[train], np.diff(sub.indptr))
    keep = sub.indices < n_terms
    counts = np.zeros((n_terms, n_topics))
    np.add.at(counts, (sub.indices[keep], rows[keep]), sub.data[keep])
    theta = (counts + alpha) / (counts.sum(axis=0) + alpha * n_terms)
    prior = np.bincount(topics[train], minlength=n_topics) + 1.0
    return TopicModel(
        log_likelihood=np.log(theta),
        log_prior=np.log(prior / prior.sum()),
        rates=_topic_rates(y, topics, train, n_topics),
    )


def _topic_logits(x: _Design, topic: TopicModel) -> FloatArray:
    """``TopicModel.logit`` of every row of ``x`` at once."""
    n = len(x.indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(x.indptr))
    keep = x.indices < len(topic.log_likelihood)
    scores = np.tile(topic.log_prior, (n, 1))
    idx, val, rid = x.indices[keep], x.data[keep], rows[keep]
    for s in range(0, len(idx), 100_000):
        part = slice(s, s + 100_000)
        np.add.at(scores, rid[part], val[part, None] * topic.log_likelihood[idx[part]])
    out: FloatArray = rate_logit(softmax_rows(scores) @ topic.rates)
    return out


def _standardise(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    return x.mean(axis=0), x.std(axis=0) + 1e-6


def _fit_dense_logistic(x: FloatArray, y: FloatArray, l2: float) -> FloatArray:
    """L2-regularised logistic regression on standardised columns by Newton's
    method; returns weights for the raw columns with the bias last."""
    mu, sd = _standardise(x)
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    p = z.shape[1]
    reg = l2 * np.eye(p)
    reg[-1, -1] = 0.0
    w = np.zeros(p)
    for _ in range(30):
        prob = sigmoid(z @ w)
        grad = z.T @ (prob - y) / len(y) + reg @ w
        hess = (z * (prob * (1 - prob))[:, None]).T @ z / len(y) + reg
        step = np.linalg.solve(hess + 1e-9 * np.eye(p), grad)
        w = w - step
        if float(np.abs(step).max()) < 1e-8:
            break
    raw = w[:-1] / sd
    return np.concatenate([raw, [w[-1] - float(mu @ raw)]])


def _fit_softmax(
    x: FloatArray, labels: npt.NDArray[np.int64], k: int, l2: float, iterations: int
) -> tuple[FloatArray, FloatArray]:
    """Multinomial logistic regression on standardised columns (Nesterov
    gradient descent); returns (weights, bias) for the raw columns."""
    mu, sd = _standardise(x)
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    onehot = np.eye(k)[labels]
    w = np.zeros((z.shape[1], k))
    v = w.copy()
    step = 0.5
    for it in range(iterations):
        grad = z.T @ (softmax_rows(z @ v) - onehot) / len(z)
        grad[:-1] += l2 * v[:-1]
        nw = v - step * grad
        v = nw + it / (it + 3) * (nw - w)
        w = nw
    raw = w[:-1] / sd[:, None]
    return raw, w[-1] - mu @ raw


def _fit_embedding_head(
    emb: FloatArray,
    dense: FloatArray,
    y_smooth: FloatArray,
    y: FloatArray,
    topics: npt.NDArray[np.int64],
    train: npt.NDArray[np.int64],
    n_topics: int,
    cfg: TrainSettings,
) -> EmbeddingHead:
    v = np.hstack([emb[train], dense[train]])
    w = _fit_dense_logistic(v, y_smooth, cfg.emb_l2)
    tw, tb = _fit_softmax(
        v, topics[train], n_topics, cfg.emb_topic_l2, cfg.emb_topic_iterations
    )
    return EmbeddingHead(
        weights=w[:-1],
        bias=float(w[-1]),
        topic_weights=tw,
        topic_bias=tb,
        topic_rates=_topic_rates(y, topics, train, n_topics),
    )


def _embedding_logits(
    head: EmbeddingHead, emb: FloatArray, dense: FloatArray
) -> FloatArray:
    v = np.hstack([emb, dense])
    topic = softmax_rows(v @ head.topic_weights + head.topic_bias)
    return np.stack(
        [v @ head.weights + head.bias, rate_logit(topic @ head.topic_rates)], axis=1
    )


def _stack(
    feats: FloatArray, y: FloatArray, folds: npt.NDArray[np.int64], l2: float
) -> tuple[FloatArray, FloatArray]:
    """The logistic stack over out-of-fold ``feats`` (weights, bias last) and
    its own out-of-fold probabilities (each fold scored by a stack fitted on
    the others)."""
    oof = np.zeros(len(y))
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        w = _fit_dense_logistic(feats[tr], y[tr], l2)
        oof[te] = sigmoid(feats[te] @ w[:-1] + w[-1])
    return _fit_dense_logistic(feats, y, l2), oof


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


def _curve_note(
    name: str, scores: FloatArray, rows: Sequence[Mapping[str, Any]]
) -> str:
    weak = [bool(r["weak_correct"]) for r in rows]
    strong = [bool(r["strong_correct"]) for r in rows]
    curve = cost_quality_curve(scores, weak, strong)
    cpt = "/".join(f"{curve.share_to_recover(p):.4f}" for p in (0.5, 0.8, 0.95))
    return (
        f"{name}_apgr={curve.apgr():.4f} {name}_cpt50/80/95={cpt} "
        f"{name}_share_for_95pct={curve.share_for_quality(0.95):.4f}"
    )


def fit_scorer(
    rows: Sequence[Mapping[str, Any]],
    settings: TrainSettings | None = None,
    embeddings: FloatArray | None = None,
) -> tuple[DifficultyScorer, FloatArray]:
    """Fit a scorer on rows with ``prompt``, ``weak_correct``, ``strong_correct``.

    ``embeddings``, one unit-norm ``EMB_DIM`` row per row of the first
    ``EMB_TOKENS`` tokens of ``embedding_input(prompt)``, adds the embedding
    head. Returns the scorer (fitted on every row) and the calibrated
    out-of-fold scores of its text path, from which its share thresholds and
    knob curve come. Its ``provenance`` records the out-of-fold figures of
    the word model alone (``words_``), the text path (``text_``) and the
    embedding path (``embedding_``).
    """
    cfg = settings or TrainSettings()
    if len(rows) < 4 * cfg.folds:
        raise DifficultyError(
            f"difficulty training needs at least {4 * cfg.folds} labelled rows, "
            f"got {len(rows)}"
        )
    if embeddings is not None and embeddings.shape != (len(rows), EMB_DIM):
        raise DifficultyError(
            f"embeddings must be {len(rows)} x {EMB_DIM}, got {embeddings.shape}"
        )
    texts = [str(r["prompt"]) for r in rows]
    y = labels(rows, cfg.target)
    groups = [_group_of(r) for r in rows]
    topics, topic_names = _topic_ids(groups)
    n_topics = len(topic_names)
    folds = grouped_folds(texts, cfg.folds, cfg.seed)

    # One vocabulary for every fold: IDF sees the held-out texts (no labels),
    # which keeps cross-validation to a single pass over the text.
    vocab, idf = build_vocabulary(texts, cfg.min_df, cfg.max_terms)
    x = _design(texts, vocab, idf)
    n_topic_terms = min(cfg.topic_terms, len(vocab))
    emb = None if embeddings is None else embeddings.astype(np.float64)
    width = 4 if emb is not None else 2
    level1 = np.zeros((len(rows), width))
    for f in range(cfg.folds):
        tr = np.flatnonzero(folds != f)
        te = np.flatnonzero(folds == f)
        if len(tr) == 0 or len(te) == 0:
            continue
        yt = smooth_labels(y, groups, tr, cfg.smoothing)
        w, d, b = _fit_logistic(x.take(tr), yt[tr], cfg.l2, cfg.iterations)
        x_te = x.take(te)
        level1[te, 0] = x_te.matvec(w, d) + b
        if n_topic_terms > 0:
            topic = _fit_topic(
                x, topics, y, tr, n_topics, n_topic_terms, cfg.topic_alpha
            )
            level1[te, 1] = _topic_logits(x_te, topic)
        if emb is not None:
            fold_head = _fit_embedding_head(
                emb, x.dense, yt[tr], y, topics, tr, n_topics, cfg
            )
            level1[te, 2:] = _embedding_logits(fold_head, emb[te], x.dense[te])

    calibration = _fit_platt(level1[:, 0], y)
    words_oof = sigmoid(calibration[0] * level1[:, 0] + calibration[1])
    notes = [_curve_note("words", words_oof, rows)]
    stack_text = stack_embedding = None
    if n_topic_terms > 0:
        stack_text, oof = _stack(level1[:, :2], y, folds, cfg.stack_l2)
        notes.append(_curve_note("text", oof, rows))
        if emb is not None:
            stack_embedding, emb_oof = _stack(level1, y, folds, cfg.stack_l2)
            notes.append(_curve_note("embedding", emb_oof, rows))
    else:
        oof = words_oof
    oof_scores = np.clip(oof, 1e-6, 1 - 1e-6)

    # The knob's table: thresholds and gap recovered per whole percent of share.
    weak = np.array([bool(r["weak_correct"]) for r in rows])
    strong = np.array([bool(r["strong_correct"]) for r in rows])
    curve = cost_quality_curve(oof_scores, weak, strong, seed=cfg.seed)
    ks = [curve.at_share(s) for s in np.linspace(0.0, 1.0, GRID)]
    share_thresholds = np.array([curve.thresholds[k] for k in ks])
    share_thresholds[-1] = 0.0
    share_pgr = np.maximum.accumulate(np.clip(curve.pgr[ks], 0.0, None))

    everything = np.arange(len(rows))
    smoothed = smooth_labels(y, groups, everything, cfg.smoothing)
    w, d, b = _fit_logistic(x, smoothed, cfg.l2, cfg.iterations)
    topic_model = None
    if n_topic_terms > 0:
        fitted = _fit_topic(
            x, topics, y, everything, n_topics, n_topic_terms, cfg.topic_alpha
        )
        topic_model = TopicModel(
            fitted.log_likelihood, fitted.log_prior, fitted.rates, tuple(topic_names)
        )
    head = None
    if emb is not None and stack_embedding is not None:
        head = _fit_embedding_head(
            emb, x.dense, smoothed, y, topics, everything, n_topics, cfg
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
            f"terms={len(vocab)} l2={cfg.l2} topic_terms={n_topic_terms} "
            f"topic_alpha={cfg.topic_alpha} topics={n_topics} "
            f"embedding={'yes' if head is not None else 'no'} "
            f"folds={cfg.folds} grouped by question stem; out-of-fold: "
            + " ".join(notes)
        ),
        topic=topic_model,
        stack_text=stack_text,
        embedding_head=head,
        stack_embedding=stack_embedding,
    )
    return scorer, oof_scores
