"""TF-IDF features from word and character n-grams, in numpy only.

A fitted ``TfidfVectorizer`` is a fixed vocabulary (n-gram → column) with an
IDF weight per column. Rows are sparse: ``SparseRows`` holds them in CSR form,
which is all the linear head needs (``X @ W`` and ``X.T @ G``).

Words: lower-cased ``\\w+`` tokens and single punctuation marks, as unigrams
and bigrams. Characters: 2- to 4-grams of the lower-cased text with runs of
whitespace collapsed. Each block is sublinear-TF × IDF, L2-normalised, and the
two blocks are joined with equal weight, so every non-empty row has norm 1.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise, repeat

import numpy as np

from mixroute.classify.lexicon import english_cues

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
CHAR_NS = (2, 3, 4)
#: Weight of character n-grams outside ASCII, before normalising. The labelled
#: non-English prompts are nearly all creative, maths or code, so their script
#: alone would pull any non-English prompt there; damping those n-grams leaves
#: more say to shared tokens (numbers, code, names) and the lexicon's cues.
FOREIGN_CHAR_WEIGHT = 0.5
#: Characters of text featurised; longer texts keep their head and tail.
TFIDF_CHARS = 1500


def clip_text(text: str, limit: int = TFIDF_CHARS) -> str:
    """``text`` if short, else its first two thirds and last third of ``limit``."""
    if len(text) <= limit:
        return text
    head = (limit * 2) // 3
    return text[:head] + " \n " + text[len(text) - (limit - head) :]


def _words(text: str) -> list[str]:
    lowered = text.lower()
    words = _WORD.findall(lowered)
    grams = [a + " " + b for a, b in pairwise(words)]
    return words + grams + english_cues(words, lowered)


def _chars(text: str) -> list[str]:
    t = " " + _SPACE.sub(" ", text.lower()).strip() + " "
    return [t[i : i + n] for n in CHAR_NS for i in range(len(t) - n + 1)]


def word_grams(text: str) -> list[str]:
    """Word unigrams and bigrams (prefixed ``w:``) of a lower-cased text, plus the
    English words for foreign task words (see ``lexicon``)."""
    return ["w:" + g for g in _words(text)]


def char_grams(text: str) -> list[str]:
    """Character 2..4-grams (prefixed ``c:``) of the whitespace-collapsed text."""
    return ["c:" + g for g in _chars(text)]


@dataclass(frozen=True)
class SparseRows:
    """A CSR matrix: row ``i`` is ``data[indptr[i]:indptr[i+1]]`` at ``indices``."""

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row_ids(self) -> np.ndarray:
        """The row of every stored value."""
        return np.repeat(np.arange(self.n_rows), np.diff(self.indptr))

    def dot(self, w: np.ndarray) -> np.ndarray:
        """``X @ w`` for a dense ``w`` of shape (n_cols, k)."""
        if self.n_rows == 1:
            one: np.ndarray = (self.data.astype(np.float64) @ w[self.indices])[None, :]
            return one
        rows = self.row_ids()
        out = np.empty((self.n_rows, w.shape[1]), dtype=np.float64)
        # bincount per column beats a 2-D gather + reduceat by an order of magnitude.
        for k in range(w.shape[1]):
            vals = self.data * w[self.indices, k]
            out[:, k] = np.bincount(rows, weights=vals, minlength=self.n_rows)
        return out

    def tdot(self, g: np.ndarray) -> np.ndarray:
        """``X.T @ g`` for a dense ``g`` of shape (n_rows, k)."""
        rows = self.row_ids()
        out = np.empty((self.n_cols, g.shape[1]), dtype=np.float64)
        for k in range(g.shape[1]):
            vals = self.data * g[rows, k]
            out[:, k] = np.bincount(self.indices, weights=vals, minlength=self.n_cols)
        return out

    def take(self, idx: Sequence[int] | np.ndarray) -> SparseRows:
        """The rows at ``idx``, in that order."""
        idx = np.asarray(idx, dtype=np.int64)
        lengths = np.diff(self.indptr)[idx]
        indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        parts = [np.arange(self.indptr[i], self.indptr[i + 1]) for i in idx]
        sel = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return SparseRows(self.data[sel], self.indices[sel], indptr, self.n_cols)

    def to_dense(self) -> np.ndarray:
        out = np.zeros((self.n_rows, self.n_cols), dtype=np.float32)
        rows = np.repeat(np.arange(self.n_rows), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out


class TfidfVectorizer:
    """A fixed n-gram vocabulary with IDF weights; ``transform`` is numpy only."""

    def __init__(self, vocab: dict[str, int], idf: np.ndarray) -> None:
        grams = sorted(vocab, key=vocab.__getitem__)
        self._init(grams, idf)
        self._vocab: dict[str, int] | None = vocab

    @classmethod
    def from_grams(cls, grams: list[str], idf: np.ndarray) -> TfidfVectorizer:
        """The vectorizer whose column ``i`` is ``grams[i]`` (fast: no full dict)."""
        self = cls.__new__(cls)
        self._init(grams, idf)
        self._vocab = None
        return self

    def _init(self, grams: list[str], idf: np.ndarray) -> None:
        self.grams = grams
        self.idf = idf.astype(np.float32)
        # Unprefixed look-up tables: building "w:"/"c:" strings per query costs more
        # than the look-up itself.
        self._word_vocab = {g[2:]: j for j, g in enumerate(grams) if g[0] == "w"}
        self._char_vocab = {g[2:]: j for j, g in enumerate(grams) if g[0] == "c"}
        self._ascii = np.fromiter((g.isascii() for g in grams), bool, len(grams))

    @property
    def vocab(self) -> dict[str, int]:
        """n-gram → column."""
        if self._vocab is None:
            self._vocab = {g: j for j, g in enumerate(self.grams)}
        return self._vocab

    @property
    def n_features(self) -> int:
        return len(self.grams)

    @classmethod
    def fit(
        cls, texts: Iterable[str], *, min_df: int = 2, always: Iterable[str] = ()
    ) -> TfidfVectorizer:
        """Vocabulary of n-grams in ≥ ``min_df`` texts or in any ``always`` text.

        IDF is smooth (``log((1 + n) / (1 + df)) + 1``) over all the texts.
        """
        df: Counter[str] = Counter()
        forced: set[str] = set()
        n = 0
        for text in texts:
            t = clip_text(text)
            df.update(set(word_grams(t)) | set(char_grams(t)))
            n += 1
        for text in always:
            t = clip_text(text)
            grams = set(word_grams(t)) | set(char_grams(t))
            df.update(grams)
            forced |= grams
            n += 1
        kept = sorted(g for g, c in df.items() if c >= min_df or g in forced)
        vocab = {g: i for i, g in enumerate(kept)}
        idf = np.array([math.log((1 + n) / (1 + df[g])) + 1.0 for g in kept])
        return cls(vocab, idf)

    def _block(
        self, grams: list[str], vocab: dict[str, int], foreign_weight: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        found = np.fromiter(map(vocab.get, grams, repeat(-1)), np.int64, len(grams))
        found = found[found >= 0]
        if len(found) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        cols, counts = np.unique(found, return_counts=True)
        v = (1.0 + np.log(counts)) * self.idf[cols]
        v *= math.sqrt(0.5) / np.linalg.norm(v)
        if foreign_weight != 1.0:
            # Damped after normalising, so a wholly foreign block really weighs less.
            v = np.where(self._ascii[cols], v, v * foreign_weight)
        return cols, v

    def transform(self, texts: Sequence[str]) -> SparseRows:
        """Sparse TF-IDF rows (empty for texts with no known n-gram)."""
        data: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        indptr = [0]
        for text in texts:
            t = clip_text(text)
            blocks = (
                (_words(t), self._word_vocab, 1.0),
                (_chars(t), self._char_vocab, FOREIGN_CHAR_WEIGHT),
            )
            for grams, vocab, weight in blocks:
                cols, vals = self._block(grams, vocab, weight)
                indices.append(cols)
                data.append(vals)
            indptr.append(indptr[-1] + len(indices[-1]) + len(indices[-2]))
        return SparseRows(
            np.concatenate(data).astype(np.float32)
            if data
            else np.zeros(0, np.float32),
            np.concatenate(indices) if indices else np.zeros(0, np.int64),
            np.asarray(indptr, dtype=np.int64),
            self.n_features,
        )
