"""Features of a prompt and the calibrated scorer that reads them."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mixroute.errors import MixrouteError

FloatArray = npt.NDArray[np.float64]

BUILTIN_PATH = Path(__file__).parent.parent / "difficulty_data" / "head.npz"
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


def sparse_row(
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


def sigmoid(z: Any) -> Any:
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
        idx, val = sparse_row(text, self.vocab, self.idf)
        z = float(val @ self.word_weights[idx]) if len(idx) else 0.0
        return z + float(dense_features(text) @ self.dense_weights) + self.bias

    def score(self, text: str, embedding: object = None) -> float:
        """``hard_probability`` of ``text`` in 0..1.

        ``embedding`` is accepted so an encoder backend can pass what it has;
        this head reads the text only, so scores do not depend on the backend.
        """
        a, b = self.calibration
        p = float(sigmoid(a * self.logit(text) + b))
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
