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

from mixroute.classify.text import clean
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
#: The embedding the optional embedding head reads: the encoder's unit-norm
#: 384-d mean-pooled vector of the first ``EMB_TOKENS`` tokens of the
#: classifier's cleaned window (``embedding_input``). That is what the route
#: classifier's cascade computes with the shipped head, so its vector can be
#: reused at no extra cost.
EMB_DIM = 384
EMB_TOKENS = 32
_CHARS_PER_TOKEN = 16
_RATE_FLOOR = 1e-3


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


def rate_logit(rate: Any) -> Any:
    """Log-odds of a rate, kept finite for topics that were all 0 or all 1."""
    r = np.clip(rate, _RATE_FLOOR, 1.0 - _RATE_FLOOR)
    return np.log(r / (1.0 - r))


def softmax_rows(z: FloatArray) -> FloatArray:
    """Row-wise softmax of a 1-d or 2-d array of scores."""
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=-1, keepdims=True)
    return out


def embedding_input(text: str, max_chars: int = _MAX_CHARS) -> str:
    """The text whose first ``EMB_TOKENS`` tokens the embedding head was
    trained on: the route classifier's cleaned window, cut where its cascade
    cuts it (a token is rarely longer than ``_CHARS_PER_TOKEN`` characters)."""
    return clean(text, max_chars)[: EMB_TOKENS * _CHARS_PER_TOKEN]


# --- the parts stacked on top of the word model -----------------------------------


@dataclass(frozen=True)
class TopicModel:
    """Which topic (MMLU subject, or the source for rows without one) a prompt
    is about, and that topic's rate of needing the strong model.

    A multinomial naive Bayes over the first ``len(log_likelihood)`` terms of
    the scorer's vocabulary (the most frequent ones) with its TF-IDF weights;
    ``expected rate = Σ P(topic | text) · rates[topic]``. The word model alone
    cannot learn fifty-odd separate base rates from noisy labels; naming the
    topic first and then reading its rate can.
    """

    log_likelihood: FloatArray  # (terms, topics)
    log_prior: FloatArray  # (topics,)
    rates: FloatArray  # (topics,)
    names: tuple[str, ...] = ()

    def logit(self, idx: npt.NDArray[np.int64], val: FloatArray) -> float:
        """Log-odds of the expected needs-strong rate of one sparse TF-IDF row."""
        keep = idx < len(self.log_likelihood)
        scores = self.log_prior.copy()
        if keep.any():
            scores += val[keep] @ self.log_likelihood[idx[keep]]
        return float(rate_logit(softmax_rows(scores) @ self.rates))


@dataclass(frozen=True)
class EmbeddingHead:
    """Two linear models over ``[embedding, dense_features]``: one for the
    log-odds of needing the strong model, one softmax naming the topic (whose
    expected rate is read as in ``TopicModel``). Standardisation is folded
    into the weights."""

    weights: FloatArray  # (EMB_DIM + N_DENSE,)
    bias: float
    topic_weights: FloatArray  # (EMB_DIM + N_DENSE, topics)
    topic_bias: FloatArray  # (topics,)
    topic_rates: FloatArray  # (topics,)

    def logits(self, embedding: FloatArray, dense: FloatArray) -> list[float]:
        """``[needs-strong log-odds, topic expected-rate log-odds]``."""
        v = np.concatenate([embedding, dense])
        topic = softmax_rows(v @ self.topic_weights + self.topic_bias)
        return [
            float(v @ self.weights + self.bias),
            float(rate_logit(topic @ self.topic_rates)),
        ]


def as_embedding(embedding: object) -> FloatArray | None:
    """``embedding`` as a unit-norm float64 vector of ``EMB_DIM``, or None when
    it is absent or not such a vector (then the text path scores alone)."""
    if embedding is None:
        return None
    try:
        e = np.asarray(embedding, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    if e.shape != (EMB_DIM,) or not np.all(np.isfinite(e)):
        return None
    norm = float(np.linalg.norm(e))
    return e / norm if norm > 1e-9 else None


# --- the scorer ------------------------------------------------------------------


@dataclass(frozen=True)
class DifficultyScorer:
    """Scores a prompt with the probability that a cheap model fails it where a
    strong model would not (``hard_probability``, 0..1).

    ``share_thresholds[i]`` is the score threshold that sent ``i`` % of the
    training prompts (scored out of fold) to the strong model, and
    ``share_pgr[i]`` the part of the quality gap that recovered: together they
    turn a cost-quality knob into a threshold.

    Two paths, both ending in a calibrated probability:

    - **text** (always): the word model's log-odds and the ``topic`` model's
      expected-rate log-odds, combined by the logistic ``stack_text``
      (weights, then bias). Artifacts without a topic model (older ones) use
      the word model with its Platt ``calibration`` instead.
    - **embedding** (when ``score`` is given an embedding and the artifact has
      an ``embedding_head``): the same two plus the head's two, combined by
      ``stack_embedding``. Only the embedding the caller already has is used;
      the scorer never runs the encoder itself, so it stays sub-millisecond.
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
    topic: TopicModel | None = None
    stack_text: FloatArray | None = None
    embedding_head: EmbeddingHead | None = None
    stack_embedding: FloatArray | None = None

    # -- scoring --

    def _word_logit(
        self, idx: npt.NDArray[np.int64], val: FloatArray, dense: FloatArray
    ) -> float:
        z = float(val @ self.word_weights[idx]) if len(idx) else 0.0
        return z + float(dense @ self.dense_weights) + self.bias

    def logit(self, text: str) -> float:
        """The word model's uncalibrated log-odds for ``text``."""
        idx, val = sparse_row(text, self.vocab, self.idf)
        return self._word_logit(idx, val, dense_features(text))

    @property
    def uses_embedding(self) -> bool:
        """Whether ``score`` reads an embedding when one is passed."""
        return self.embedding_head is not None and self.stack_embedding is not None

    @property
    def emb_tokens(self) -> int | None:
        """The token count of the embedding ``score`` reads (None: it reads
        none), so a caller can tell whether the vector it has fits."""
        return EMB_TOKENS if self.uses_embedding else None

    def score(self, text: str, embedding: object = None) -> float:
        """``hard_probability`` of ``text`` in 0..1.

        ``embedding``: the unit-norm ``EMB_DIM`` vector of the first
        ``EMB_TOKENS`` tokens of ``embedding_input(text)``, if the caller has
        it; anything else (None, another shape) scores by the text path.
        """
        idx, val = sparse_row(text, self.vocab, self.idf)
        dense = dense_features(text)
        z = self._word_logit(idx, val, dense)
        if self.topic is None or self.stack_text is None:
            a, b = self.calibration
            p = float(sigmoid(a * z + b))
        else:
            feats = [z, self.topic.logit(idx, val)]
            stack: FloatArray | None = self.stack_text
            emb = as_embedding(embedding) if self.uses_embedding else None
            if emb is not None and self.embedding_head is not None:
                feats += self.embedding_head.logits(emb, dense)
                stack = self.stack_embedding
            assert stack is not None
            p = float(sigmoid(float(stack[:-1] @ np.array(feats)) + stack[-1]))
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
        extra: dict[str, Any] = {}
        if self.topic is not None and self.stack_text is not None:
            extra.update(
                # float16 keeps the table small; its 3 significant digits are
                # far finer than the differences between topics.
                topic_log_likelihood=self.topic.log_likelihood.astype(np.float16),
                topic_log_prior=self.topic.log_prior,
                topic_rates=self.topic.rates,
                topic_names=np.array("\n".join(self.topic.names)),
                stack_text=self.stack_text,
            )
        head = self.embedding_head
        if head is not None and self.stack_embedding is not None:
            extra.update(
                emb_weights=head.weights,
                emb_bias=np.array(head.bias),
                emb_topic_weights=head.topic_weights.astype(np.float32),
                emb_topic_bias=head.topic_bias,
                emb_topic_rates=head.topic_rates,
                emb_tokens=np.array(EMB_TOKENS),
                stack_embedding=self.stack_embedding,
            )
        np.savez_compressed(
            path,
            **extra,
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
                    **_optional_parts(z),
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
        if scorer.topic is not None and len(scorer.topic.log_likelihood) > len(words):
            raise DifficultyError(
                f"difficulty artifact {path} is inconsistent: its topic model "
                f"reads {len(scorer.topic.log_likelihood)} terms of {len(words)}"
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


def _optional_parts(z: Any) -> dict[str, Any]:
    """The topic model, embedding head and their stacks, where the artifact
    has them (artifacts written before they existed have neither)."""
    out: dict[str, Any] = {}
    if "topic_log_likelihood" in z and "stack_text" in z:
        names = str(z["topic_names"])
        out["topic"] = TopicModel(
            log_likelihood=z["topic_log_likelihood"].astype(np.float64),
            log_prior=z["topic_log_prior"].astype(np.float64),
            rates=z["topic_rates"].astype(np.float64),
            names=tuple(names.split("\n")) if names else (),
        )
        out["stack_text"] = z["stack_text"].astype(np.float64)
        if len(out["stack_text"]) != 3:
            raise ValueError("stack_text must hold two weights and a bias")
    if "emb_weights" in z and "stack_embedding" in z and "topic" in out:
        if int(z["emb_tokens"]) != EMB_TOKENS:
            raise ValueError(
                f"embedding head trained on {int(z['emb_tokens'])} tokens, "
                f"this mixroute embeds {EMB_TOKENS}"
            )
        out["embedding_head"] = EmbeddingHead(
            weights=z["emb_weights"].astype(np.float64),
            bias=float(z["emb_bias"]),
            topic_weights=z["emb_topic_weights"].astype(np.float64),
            topic_bias=z["emb_topic_bias"].astype(np.float64),
            topic_rates=z["emb_topic_rates"].astype(np.float64),
        )
        out["stack_embedding"] = z["stack_embedding"].astype(np.float64)
        if len(out["stack_embedding"]) != 5:
            raise ValueError("stack_embedding must hold four weights and a bias")
    return out
