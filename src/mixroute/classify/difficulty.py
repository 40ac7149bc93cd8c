"""Difficulty: how likely a cheap model fails a prompt, and what routing on it buys.

The scorer is a calibrated logistic model over the prompt's words (unigrams and
bigrams, TF-IDF weighted) plus a few structural counts (length, numbers,
arithmetic operators, answer options). It needs numpy only, runs in well under a
millisecond, and holds no state between calls, so one instance serves every
thread.

The label it learns is RouteLLM's: a prompt *needs the strong model* when the
weak model got it wrong and the strong one got it right. Ranking prompts by that
probability is what recovers the quality gap with the fewest strong calls (a
prompt both models fail gains nothing from the dearer call); ``score`` returns
it calibrated, as ``hard_probability``. Whether one model got one question right
is a noisy draw, so in training each MMLU label is moved toward its subject's
rate (``TrainSettings.smoothing``); rows with no subject keep their own label.

Routing evaluation follows RouteLLM: sort prompts by score, send the top share
to the strong model, and measure quality (the share answered correctly by the
model chosen) against that share. APGR is the mean over a 101-point grid of
shares of the performance gap recovered ``(q - q_weak) / (q_strong - q_weak)``;
CPT(x) is the smallest share recovering x of the gap.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mixroute.errors import MixrouteError

FloatArray = npt.NDArray[np.float64]

BUILTIN_PATH = Path(__file__).parent / "difficulty_data" / "head.npz"
GRID = 101
_WORD = re.compile(r"[a-z0-9]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_OPERATOR = re.compile(r"[+\-*/=%^×÷]")
_OPTION = re.compile(r"^[A-J][.)]\s", re.MULTILINE)
_MAX_CHARS = 4000
N_DENSE = 11


class DifficultyError(MixrouteError):
    """A difficulty artifact or training file cannot be used."""


# --- features -------------------------------------------------------------------


def _window(text: str) -> str:
    # The end of a long paste holds the question; bound the work per prompt.
    return text[-_MAX_CHARS:]


def terms(text: str) -> list[str]:
    """The word unigrams and bigrams the scorer counts, in order."""
    words = _WORD.findall(_window(text).lower())
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def dense_features(text: str) -> FloatArray:
    """Structural counts, squashed to comparable scales (see ``N_DENSE``)."""
    t = _window(text)
    numbers = _NUMBER.findall(t)
    words = len(_WORD.findall(t))
    options = len(_OPTION.findall(t))
    # Open questions (no answer options, e.g. word problems) get their own
    # length and number slopes: there, longer means more steps.
    open_question = float(options == 0)
    size = [
        math.log1p(len(t)) / 8.0,
        math.log1p(words) / 6.0,
        math.log1p(len(numbers)) / 3.0,
    ]
    return np.array(
        [
            *size,
            math.log1p(len(_OPERATOR.findall(t))) / 3.0,
            math.log1p(options) / 2.0,
            float(bool(re.search(r"\b(not|except|least|false)\b", t, re.I))),
            float(t.rstrip().endswith("?")),
            math.log1p(sum(len(n) for n in numbers)) / 4.0,
            *(open_question * v for v in size),
        ],
        dtype=np.float64,
    )


def _sparse_row(
    text: str, vocab: Mapping[str, int], idf: FloatArray
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    counts: dict[int, int] = {}
    for term in terms(text):
        j = vocab.get(term)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    val = (1.0 + np.log(tf)) * idf[idx]
    return idx, val / np.linalg.norm(val)


def _sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


# --- the scorer ------------------------------------------------------------------


@dataclass(frozen=True)
class DifficultyScorer:
    """Scores a prompt with the probability that a cheap model fails it where a
    strong model would not (``hard_probability``, 0..1).

    ``share_thresholds[i]`` is the score threshold that sent ``i`` % of the
    training prompts (scored out of fold) to the strong model, and
    ``share_pgr[i]`` the part of the quality gap that recovered: together they
    turn a cost-quality knob into a threshold.
    """

    vocab: Mapping[str, int]
    idf: FloatArray
    word_weights: FloatArray
    dense_weights: FloatArray
    bias: float
    calibration: tuple[float, float]
    share_thresholds: FloatArray
    share_pgr: FloatArray
    provenance: str = ""

    # -- scoring --

    def logit(self, text: str) -> float:
        """The uncalibrated log-odds for ``text``."""
        idx, val = _sparse_row(text, self.vocab, self.idf)
        z = float(val @ self.word_weights[idx]) if len(idx) else 0.0
        return z + float(dense_features(text) @ self.dense_weights) + self.bias

    def score(self, text: str, embedding: object = None) -> float:
        """``hard_probability`` of ``text`` in 0..1.

        ``embedding`` is accepted so an encoder backend can pass what it has;
        this head reads the text only, so scores do not depend on the backend.
        """
        a, b = self.calibration
        p = float(_sigmoid(a * self.logit(text) + b))
        return min(max(p, 1e-6), 1.0 - 1e-6)

    def score_many(self, texts: Iterable[str]) -> FloatArray:
        """``score`` of each text, as an array."""
        return np.array([self.score(t) for t in texts], dtype=np.float64)

    # -- the knob --

    def threshold_for_share(self, share: float) -> float:
        """The threshold that sent ``share`` (0..1) of the training prompts to the
        strong model: route strong when ``score >= threshold``."""
        if share <= 0.0:
            return 1.0
        if share >= 1.0:
            return 0.0
        i = share * (len(self.share_thresholds) - 1)
        lo = math.floor(i)
        hi = min(lo + 1, len(self.share_thresholds) - 1)
        f = i - lo
        t = (1 - f) * self.share_thresholds[lo] + f * self.share_thresholds[hi]
        return float(t)

    def share_for(self, cost_quality: float) -> float:
        """The smallest strong share that recovered ``cost_quality`` of the
        weak-to-strong quality gap on the training curve (0 → 0, 1 → 1)."""
        if cost_quality <= 0.0:
            return 0.0
        if cost_quality >= 1.0:
            return 1.0
        reached = np.nonzero(self.share_pgr >= cost_quality)[0]
        if len(reached) == 0:
            return 1.0
        return float(reached[0]) / (len(self.share_pgr) - 1)

    def strong_threshold_for(self, cost_quality: float) -> float:
        """The ``hard_probability`` threshold for knob ``cost_quality``
        (0 = cheapest: never strong, threshold 1; 1 = best: always strong,
        threshold 0). In between, the knob is the part of the quality gap to
        recover, read off the training curve."""
        return self.threshold_for_share(self.share_for(cost_quality))

    # -- files --

    def save(self, path: Path) -> None:
        """Write the artifact (a numpy ``.npz``, no pickles)."""
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        np.savez_compressed(
            path,
            vocab=np.array("\n".join(words)),
            idf=self.idf.astype(np.float32),
            word_weights=self.word_weights.astype(np.float32),
            dense_weights=self.dense_weights,
            bias=np.array(self.bias),
            calibration=np.array(self.calibration),
            share_thresholds=self.share_thresholds,
            share_pgr=self.share_pgr,
            provenance=np.array(self.provenance),
        )

    @classmethod
    def load(cls, path: Path | str) -> DifficultyScorer:
        """Read an artifact written by ``save``; ``DifficultyError`` if unusable."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                words = str(z["vocab"]).split("\n")
                cal = z["calibration"]
                scorer = cls(
                    vocab={w: i for i, w in enumerate(words)},
                    idf=z["idf"].astype(np.float64),
                    word_weights=z["word_weights"].astype(np.float64),
                    dense_weights=z["dense_weights"].astype(np.float64),
                    bias=float(z["bias"]),
                    calibration=(float(cal[0]), float(cal[1])),
                    share_thresholds=z["share_thresholds"].astype(np.float64),
                    share_pgr=z["share_pgr"].astype(np.float64),
                    provenance=str(z["provenance"]),
                )
        except (OSError, KeyError, ValueError, IndexError) as exc:
            raise DifficultyError(
                f"difficulty artifact {path} cannot be read: {exc}"
            ) from exc
        if len(scorer.idf) != len(words) or len(scorer.word_weights) != len(words):
            raise DifficultyError(
                f"difficulty artifact {path} is inconsistent: "
                f"{len(words)} terms but {len(scorer.word_weights)} weights"
            )
        if len(scorer.dense_weights) != N_DENSE:
            raise DifficultyError(
                f"difficulty artifact {path} has {len(scorer.dense_weights)} "
                f"structural weights; this mixroute expects {N_DENSE}"
            )
        return scorer

    @classmethod
    def load_builtin(cls) -> DifficultyScorer | None:
        """The scorer shipped with mixroute, or None when its file is absent."""
        if not BUILTIN_PATH.is_file():
            return None
        return cls.load(BUILTIN_PATH)


# --- training ---------------------------------------------------------------------


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
        idx, val = _sparse_row(t, vocab, idf)
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
        g = (_sigmoid(z) - y) / n
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
        p = _sigmoid(a * z + b)
        r = p - y
        s = p * (1 - p) + 1e-9
        grad = np.array([r @ z, r.sum()])
        hess = np.array([[s @ (z * z), s @ z], [s @ z, s.sum()]]) + 1e-6 * np.eye(2)
        da, db = np.linalg.solve(hess, grad)
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-10:
            break
    return float(a), float(b)


# --- routing metrics ----------------------------------------------------------------


@dataclass(frozen=True)
class CostQualityCurve:
    """Quality and gap recovered when the top-scored share goes to the strong model.

    ``quality[k]`` is the share answered correctly when the ``k`` highest-scored
    prompts go to the strong model (``k`` = 0..n); ties are broken by a fixed
    pseudo-random order so equal scores are not sorted by file position.
    """

    quality: FloatArray
    thresholds: FloatArray
    weak_quality: float
    strong_quality: float

    @property
    def n(self) -> int:
        return len(self.quality) - 1

    @property
    def pgr(self) -> FloatArray:
        gap = self.strong_quality - self.weak_quality
        if gap <= 0:
            return np.ones_like(self.quality)
        return (self.quality - self.weak_quality) / gap

    def at_share(self, share: float) -> int:
        return round(share * self.n)

    def apgr(self) -> float:
        """Mean gap recovered over the 101-point grid of strong shares."""
        ks = [self.at_share(s) for s in np.linspace(0.0, 1.0, GRID)]
        return float(np.mean(self.pgr[ks]))

    def share_to_recover(self, part: float) -> float:
        """CPT: the smallest strong share that recovers ``part`` of the gap."""
        hit = np.nonzero(self.pgr >= part - 1e-12)[0]
        return float(hit[0]) / self.n if len(hit) else 1.0

    def share_for_quality(self, part_of_strong: float) -> float:
        """The smallest strong share reaching ``part_of_strong`` × strong-only
        quality."""
        hit = np.nonzero(self.quality >= part_of_strong * self.strong_quality - 1e-12)[
            0
        ]
        return float(hit[0]) / self.n if len(hit) else 1.0


def cost_quality_curve(
    scores: Sequence[float] | FloatArray,
    weak_correct: Sequence[bool] | npt.NDArray[np.bool_],
    strong_correct: Sequence[bool] | npt.NDArray[np.bool_],
    seed: int = 0,
) -> CostQualityCurve:
    """The curve from routing the highest ``scores`` to the strong model first."""
    s = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak_correct, dtype=np.float64)
    strong = np.asarray(strong_correct, dtype=np.float64)
    n = len(s)
    if n == 0 or len(weak) != n or len(strong) != n:
        raise DifficultyError("the curve needs as many scores as labelled rows (≥ 1)")
    tiebreak = np.random.default_rng(seed).random(n)
    order = np.lexsort((tiebreak, -s))
    gain = (strong - weak)[order]
    quality = weak.mean() + np.concatenate([[0.0], np.cumsum(gain)]) / n
    thresholds = np.concatenate([[1.0], s[order]])
    return CostQualityCurve(
        quality, thresholds, float(weak.mean()), float(strong.mean())
    )


def curve_report(curve: CostQualityCurve, points: int = 21) -> dict[str, Any]:
    """APGR, CPT(50/80/95), the share for 95 % of strong quality, and the curve
    at ``points`` evenly spaced strong shares."""
    pgr = curve.pgr
    table = []
    for share in np.linspace(0.0, 1.0, points):
        k = curve.at_share(float(share))
        table.append(
            {
                "strong_share": round(float(share), 4),
                "threshold": round(float(curve.thresholds[k]), 6),
                "quality": round(float(curve.quality[k]), 4),
                "pgr": round(float(pgr[k]), 4),
            }
        )
    return {
        "apgr": round(curve.apgr(), 4),
        "cpt": {
            str(p): round(curve.share_to_recover(p / 100), 4) for p in (50, 80, 95)
        },
        "strong_share_for_95pct_quality": round(curve.share_for_quality(0.95), 4),
        "weak_quality": round(curve.weak_quality, 4),
        "strong_quality": round(curve.strong_quality, 4),
        "curve": table,
    }


# --- fitting a scorer ---------------------------------------------------------------


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
    oof_scores = np.clip(
        _sigmoid(calibration[0] * oof + calibration[1]), 1e-6, 1 - 1e-6
    )

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


# --- `mixroute eval` and `mixroute train` on cost-quality rows ----------------------

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


def evaluate_scorer(
    scorer: DifficultyScorer, rows: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], FloatArray]:
    """The full report (curve, baselines, single-query latency) and the scores."""
    _check_rows(rows)
    scores = np.zeros(len(rows))
    timings = np.zeros(len(rows))
    for i, r in enumerate(rows):
        t0 = time.perf_counter()
        scores[i] = scorer.score(str(r["prompt"]))
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


def train_difficulty_cli(config: object, path: Path, out: Path) -> None:
    """``mixroute train`` on rows with ``weak_correct``/``strong_correct``: fit a
    scorer, write it to ``out`` and print what the out-of-fold curve shows.
    Rows missing either label (some feedback rows) are skipped."""
    del config
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
    scorer, oof = fit_scorer(rows)
    scorer.save(out)
    weak = [bool(r["weak_correct"]) for r in rows]
    strong = [bool(r["strong_correct"]) for r in rows]
    curve = cost_quality_curve(oof, weak, strong)
    print(
        f"difficulty scorer: {len(rows)} rows, {len(scorer.vocab)} terms → {out}\n"
        f"out-of-fold: APGR {curve.apgr():.3f}, strong share for 95% of strong "
        f"quality {curve.share_for_quality(0.95):.1%}"
    )
