"""Multinomial logistic regression and temperature scaling, in numpy only.

Features come as a list of blocks (``SparseRows`` or dense arrays) whose
columns are laid side by side; ``X @ W`` is the sum of each block times its
slice of ``W``. Training is full-batch Nesterov-accelerated gradient descent
on the class-weighted mean cross-entropy plus an L2 penalty: the problem is
convex and small (a few thousand rows), so a fixed step from the Lipschitz
bound converges without line search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mixroute.classify.tfidf import SparseRows

Block = SparseRows | np.ndarray


def _n_cols(block: Block) -> int:
    return block.n_cols if isinstance(block, SparseRows) else int(block.shape[1])


def _max_sq_norm(block: Block) -> float:
    if isinstance(block, SparseRows):
        if len(block.data) == 0:
            return 0.0
        sq = np.zeros(block.n_rows)
        rows = np.repeat(np.arange(block.n_rows), np.diff(block.indptr))
        np.add.at(sq, rows, block.data.astype(np.float64) ** 2)
        return float(sq.max())
    return float((block.astype(np.float64) ** 2).sum(axis=1).max())


def blocks_dot(blocks: Sequence[Block], w: np.ndarray) -> np.ndarray:
    """``[B1 B2 ...] @ w``."""
    out: np.ndarray | None = None
    start = 0
    for block in blocks:
        width = _n_cols(block)
        part = w[start : start + width]
        z = block.dot(part) if isinstance(block, SparseRows) else block @ part
        out = z if out is None else out + z
        start += width
    assert out is not None
    return out


def _blocks_tdot(blocks: Sequence[Block], g: np.ndarray) -> np.ndarray:
    parts = [b.tdot(g) if isinstance(b, SparseRows) else b.T @ g for b in blocks]
    return np.concatenate(parts, axis=0)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


@dataclass(frozen=True)
class LinearModel:
    """Logits ``X @ weights + bias``; probabilities softmax(logits / temperature)."""

    weights: np.ndarray
    bias: np.ndarray
    temperature: float = 1.0

    def logits(self, blocks: Sequence[Block]) -> np.ndarray:
        out: np.ndarray = blocks_dot(blocks, self.weights) + self.bias
        return out

    def proba(self, blocks: Sequence[Block]) -> np.ndarray:
        return softmax(self.logits(blocks) / self.temperature)


def class_weights(y: np.ndarray, n_classes: int, power: float = 0.5) -> np.ndarray:
    """Per-row weights ∝ (1 / class count) ** ``power``, mean 1."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    per_class = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0) ** power
    w = per_class[y]
    out: np.ndarray = w / w.mean()
    return out


def gram(blocks: Sequence[Block]) -> np.ndarray:
    """``X @ X.T`` for the joined blocks (rows × rows, float64)."""
    n = blocks[0].n_rows if isinstance(blocks[0], SparseRows) else len(blocks[0])
    k = np.zeros((n, n))
    for block in blocks:
        if not isinstance(block, SparseRows):
            dense = block.astype(np.float64)
            k += dense @ dense.T
            continue
        # Dense column slices keep memory bounded and let BLAS do the work.
        for start in range(0, block.n_cols, 8192):
            stop = min(start + 8192, block.n_cols)
            sel = (block.indices >= start) & (block.indices < stop)
            part = np.zeros((n, stop - start), dtype=np.float32)
            part[block.row_ids()[sel], block.indices[sel] - start] = block.data[sel]
            k += (part @ part.T).astype(np.float64)
    return k


def fit_dual(
    kernel: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float = 1e-4,
    balance: float = 0.5,
    iters: int = 300,
) -> tuple[np.ndarray, np.ndarray]:
    """Dual coefficients A (rows × classes) and bias; logits = ``kernel @ A + b``.

    With an L2 penalty the weights stay in the span of the rows (W = Xᵀ A), so
    the descent runs on A with the Gram matrix ``kernel`` = X Xᵀ: the same
    iterates as in feature space, at a cost that does not grow with the
    vocabulary. New rows are scored with their kernel against the training rows.
    """
    n = len(y)
    sample_w = class_weights(y, n_classes, balance)
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    lipschitz = 0.5 * float(np.diag(kernel).max()) * sample_w.max() + 0.5
    step = 1.0 / (lipschitz + l2)

    a = np.zeros((n, n_classes))
    b = np.zeros(n_classes)
    a_prev, b_prev = a, b
    for it in range(1, iters + 1):
        momentum = (it - 1) / (it + 2)
        va = a + momentum * (a - a_prev)
        vb = b + momentum * (b - b_prev)
        p = softmax(kernel @ va + vb)
        g = (p - onehot) * sample_w[:, None] / n
        a_prev, b_prev = a, b
        a = va - step * (g + l2 * va)
        b = vb - step * g.sum(axis=0)
    return a, b


def fit_softmax(
    blocks: Sequence[Block],
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float = 1e-4,
    balance: float = 0.5,
    iters: int = 300,
    kernel: np.ndarray | None = None,
) -> LinearModel:
    """Fit weights and bias on rows ``blocks`` with integer labels ``y``.

    Solved in the dual (``fit_dual``); ``kernel`` may pass a precomputed
    ``gram(blocks)``.
    """
    k = gram(blocks) if kernel is None else kernel
    a, b = fit_dual(k, y, n_classes, l2=l2, balance=balance, iters=iters)
    weights = _blocks_tdot(blocks, a)
    return LinearModel(weights.astype(np.float32), b.astype(np.float32))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``y``."""
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(10.0), 120)):
        p = softmax(logits / t)
        nll = -np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> float:
    """ECE: the bin-size-weighted mean |accuracy − confidence| over equal-width bins."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for k in range(bins):
        mask = idx == k
        if mask.any():
            gap = abs(correct[mask].mean() - confidence[mask].mean())
            total += mask.sum() / len(confidence) * gap
    return float(total)
