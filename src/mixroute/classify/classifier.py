"""The classifier: a TF-IDF head first, the encoder only where it is unsure.

How one text is classified (``RouterClassifier.classify``):

1. **Window.** Control characters out, whitespace collapsed, at most
   ``classifier.max_chars`` characters (head and tail kept), see ``text.py``.
   An empty window gets the first route with confidence 0, so the policy
   sends it to the default model; binary junk (over ``JUNK_SHARE`` control
   or replacement characters) has its probabilities halved, for the same end.
2. **Text stage.** TF-IDF word and character n-grams → the head's text model
   → calibrated probabilities. This costs ~1–3 ms.
3. **Cascade.** On the ``onnx`` backend, when the text stage's top
   probability is below the head's ``cascade_below`` (picked in training on
   cross-validated accuracy), the encoder embeds the first ``emb_tokens``
   tokens and the joint model (TF-IDF + embedding) decides instead.
4. **Routes outside the head.** Routes of the config that the head has no
   class for (a user's own route) are scored against their utterances
   (``RouteIndex``); the probability mass those routes win is taken
   proportionally from the head's classes. The head's probability on a
   class the config has no route for is left unassigned, so a config with
   only some of the shipped routes is not over-confident about them. With
   no head at all, the utterance index alone decides.
5. **Context.** ``classify_messages`` classifies the last user turn; the
   turn before it, when present, is blended in with weight ``CONTEXT_WEIGHT``.
6. **Tier.** ``hard_probability`` comes from the trained difficulty scorer
   when ``mixroute.classify.difficulty`` provides one, else from the
   documented heuristic in ``tier.py``; tiers are cut at ``classifier.tiers``.

Results are kept in an LRU cache keyed on the case-folded, whitespace-
collapsed text. Everything here is safe to call from many threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mixroute.classify import text as textmod
from mixroute.classify.base import Classification
from mixroute.classify.head import Head
from mixroute.classify.index import RouteIndex, cache_dir, cache_key, cached_embeddings
from mixroute.classify.tfidf import SparseRows, TfidfVectorizer
from mixroute.classify.tier import heuristic_hard_probability, tier_of
from mixroute.config.schema import MixrouteConfig

log = logging.getLogger("mixroute.classify")

# Cut points for the untrained heuristic's scale (see tier.py).
HEURISTIC_CUTS = (0.35, 0.65)

CONTEXT_WEIGHT = 0.2
HASH_DIM = 384
GATE_MARGIN = 0.08
JUNK_SHARE = 0.1
#: Tokens of a prompt embedded to match it against the utterances of routes
#: outside the head (at most ``classifier.max_tokens``). Every prompt pays
#: for this embedding when the config has such a route; on routing-dev with
#: the code route renamed (so outside the head), 128 tokens instead of 256
#: halved p99 and found that route 80 % of the time instead of 82 %.
INDEX_TOKENS = 128
JUNK_CONFIDENCE = 0.5


class RouterClassifier:
    """Classifies prompts into the config's routes (see the module docstring)."""

    def __init__(
        self,
        config: MixrouteConfig,
        *,
        head: Head | None,
        encoder: Any | None,
        difficulty: Any | None = None,
    ) -> None:
        self.config = config
        self.settings = config.classifier
        self.routes: Sequence[str] = tuple(config.route_names)
        self.backend = "onnx" if encoder is not None else "tfidf"
        self._head = head
        self._encoder = encoder
        self._difficulty = difficulty
        self._tier_cuts = self._cut_points()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, Classification] = OrderedDict()
        self._route_pos = {r: i for i, r in enumerate(self.routes)}

        head_classes = set(head.classes) if head else set()
        self._head_cols = (
            np.array([self._route_pos.get(c, -1) for c in head.classes])
            if head
            else None
        )
        self._outside = [r for r in self.routes if r not in head_classes]
        self._vectorizer = head.vectorizer if head else self._utterance_vectorizer()
        self._index = self._build_index() if self._outside else None

    # ----- set-up -------------------------------------------------------------

    def _utterance_vectorizer(self) -> TfidfVectorizer:
        texts = [u for r in self.config.routes for u in r.utterances] or [" "]
        return TfidfVectorizer.fit([], min_df=1, always=texts)

    def _build_index(self) -> RouteIndex | None:
        # Every route's utterances, so outside routes compete with the head's.
        pairs = [(r.name, u) for r in self.config.routes for u in r.utterances]
        if not pairs:
            return None
        texts = [u for _, u in pairs]
        enc = self._encoder.get() if self._encoder is not None else None
        if enc is not None:
            key = cache_key(f"{enc.model_sha256}:{self.settings.max_tokens}", pairs)
            vectors = cached_embeddings(
                cache_dir(self.settings.cache_dir),
                key,
                len(texts),
                lambda: enc.embed_batched(texts, self.settings.max_tokens),
            )
        else:
            vectors = self._hashed(self._vectorizer.transform(texts))
        return RouteIndex(self.routes, [r for r, _ in pairs], vectors)

    # ----- public API ---------------------------------------------------------

    def classify(self, text: str) -> Classification:
        """Classify one prompt; never raises on odd input (empty, binary, huge)."""
        return self._cached(text, "")

    def classify_messages(
        self, messages: Sequence[Mapping[str, object]]
    ) -> Classification:
        """Classify an OpenAI ``messages`` list: last user turn, previous as context."""
        last, context = textmod.messages_text(messages)
        return self._cached(last, context)

    def lookup_messages(
        self, messages: Sequence[Mapping[str, object]]
    ) -> Classification | None:
        """The cached classification of ``messages``, or None: nothing is
        computed, so a short prompt can be looked up on the event loop."""
        if not self.settings.cache_size:
            return None
        started = time.perf_counter()
        last, context = textmod.messages_text(messages)
        return self._hit(self._key(last, context), started)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 rows: the encoder's, or hashed TF-IDF on ``tfidf``."""
        windows = [textmod.clean(t, self.settings.max_chars) for t in texts]
        enc = self._encoder.get() if self._encoder is not None else None
        if enc is not None:
            out: np.ndarray = enc.embed(windows, self.settings.max_tokens)
            return out
        return self._hashed(self._vectorizer.transform(windows))

    # ----- internals ----------------------------------------------------------

    def _hit(self, key: str, started: float) -> Classification | None:
        # The cached classification under ``key``, now most recently used.
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        return None if hit is None else _with_latency(hit, started)

    def _cached(self, text: str, context: str) -> Classification:
        started = time.perf_counter()
        key = self._key(text, context)
        if self.settings.cache_size:
            hit = self._hit(key, started)
            if hit is not None:
                return hit
        result = self._classify(text, context)
        if self.settings.cache_size:
            with self._lock:
                self._cache[key] = result
                while len(self._cache) > self.settings.cache_size:
                    self._cache.popitem(last=False)
        return _with_latency(result, started)

    @staticmethod
    def _key(text: str, context: str) -> str:
        key = textmod.cache_key(text[:20000]) + "\0" + textmod.cache_key(context)
        if len(text) > 20000:
            key += f"\0{len(text)}:{hash(text)}"
        return key

    def _classify(self, text: str, context: str) -> Classification:
        window = textmod.clean(text, self.settings.max_chars)
        if not window:
            return Classification(
                route=self.routes[0],
                confidence=0.0,
                tier="simple",
                scores=dict.fromkeys(self.routes, 0.0),
                hard_probability=0.0,
                backend=self.backend,
            )
        x = self._vectorizer.transform([window])
        probs, emb = self._route_probs(window, x)
        if context.strip():
            ctx = textmod.clean(context, textmod.CONTEXT_CHARS)
            ctx_probs, _ = self._route_probs(ctx, self._vectorizer.transform([ctx]))
            probs = (1 - CONTEXT_WEIGHT) * probs + CONTEXT_WEIGHT * ctx_probs
        if textmod.junk_share(text, self.settings.max_chars) > JUNK_SHARE:
            # Binary junk: keep the scores' order but never let the policy trust
            # it with a cheap model.
            probs = probs * JUNK_CONFIDENCE
        best = int(np.argmax(probs))
        route = self.routes[best]
        hard = self._hard_probability(window, route, emb, x)
        medium_cut, complex_cut = self._tier_cuts
        return Classification(
            route=route,
            confidence=float(probs[best]),
            tier=tier_of(hard, medium_cut, complex_cut),
            scores={r: float(p) for r, p in zip(self.routes, probs, strict=True)},
            hard_probability=hard,
            backend=self.backend,
        )

    def _route_probs(
        self, window: str, x: SparseRows
    ) -> tuple[np.ndarray, np.ndarray | None]:
        out = np.zeros(len(self.routes))
        emb: np.ndarray | None = None
        head = self._head
        if head is not None and self._head_cols is not None:
            p = head.text_proba(x)[0]
            unsure = head.has_joint and p.max() < head.cascade_below
            enc = self._encoder.get() if self._encoder is not None and unsure else None
            if enc is not None:
                # Only the first emb_tokens tokens count; do not tokenise the rest.
                emb = enc.embed([window[: head.emb_tokens * 16]], head.emb_tokens)
                p = head.joint_proba(x, emb)[0]
            known = self._head_cols >= 0
            # The head's probability on classes this config has no route for
            # stays unassigned: such a prompt belongs to none of the configured
            # routes, so none of them may claim that share as confidence.
            out[self._head_cols[known]] = p[known]
        if self._index is not None:
            enc = self._encoder.get() if self._encoder is not None else None
            query = (
                enc.embed([window], min(self.settings.max_tokens, INDEX_TOKENS))[0]
                if enc is not None
                else self._hashed(x)[0]
            )
            q = self._index.proba(query)
            if head is None:
                out = q
            else:
                # Outside routes win the share of utterance probability that falls
                # on them, scaled down unless their utterances match better than any
                # head route's; the head's classes keep the rest in proportion.
                sims = self._index.similarities(query)
                outside = np.array([self._route_pos[r] for r in self._outside])
                inside = np.setdiff1d(np.arange(len(self.routes)), outside)
                best_in = float(sims[inside].max()) if len(inside) else -1.0
                gate = _utterance_gate(float(sims[outside].max()), best_in)
                won = float(q[outside].sum()) * gate
                out = out * (1 - won)
                out[outside] = won * q[outside] / max(float(q[outside].sum()), 1e-12)
        return out, emb

    def _cut_points(self) -> tuple[float, float]:
        """Tier cut points on the scale of whichever scorer is in use."""
        tiers = self.settings.tiers
        medium, complex_ = HEURISTIC_CUTS
        scorer = self._difficulty
        share_of = getattr(scorer, "threshold_for_share", None)
        if share_of is not None:
            try:
                medium = float(share_of(tiers.medium_share))
                complex_ = float(share_of(tiers.complex_share))
            except Exception as exc:  # an odd artifact must not stop start-up
                log.warning("difficulty scorer has no usable scale: %s", exc)
        medium = tiers.medium if tiers.medium is not None else medium
        complex_ = tiers.complex if tiers.complex is not None else complex_
        return medium, max(medium, complex_)

    def _hard_probability(
        self, window: str, route: str, emb: np.ndarray | None, x: SparseRows
    ) -> float:
        if self._difficulty is not None:
            # The scorer's embedding head reads vectors of its own token count
            # only; the head's cascade embeds ``emb_tokens`` tokens.
            fits = getattr(self._difficulty, "emb_tokens", None)
            if self._head is None or fits != self._head.emb_tokens:
                emb = None
            try:
                score = float(self._difficulty.score(window, emb))
                if 0.0 <= score <= 1.0:
                    return score
            except Exception as exc:  # a broken optional scorer must not stop routing
                log.warning("difficulty scorer failed, using the heuristic: %s", exc)
                self._difficulty = None
                self._tier_cuts = self._cut_points()
        return heuristic_hard_probability(window, route)

    def _hashed(self, x: SparseRows) -> np.ndarray:
        """TF-IDF rows folded into ``HASH_DIM`` signed buckets, unit-normalised."""
        cols = x.indices
        bucket = (cols * 2654435761) % 4294967296 % HASH_DIM
        sign = np.where(((cols * 40503) >> 3) & 1, 1.0, -1.0)
        out = np.zeros((x.n_rows, HASH_DIM))
        np.add.at(out, (x.row_ids(), bucket), x.data * sign)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        result: np.ndarray = (out / np.maximum(norms, 1e-12)).astype(np.float32)
        return result


def _utterance_gate(best_outside: float, best_inside: float) -> float:
    """How far to trust an outside route: 0 unless its utterances match better
    than every head route's, 1 once they lead by ``GATE_MARGIN`` cosine."""
    if best_outside < 0.1:
        return 0.0
    return float(np.clip((best_outside - best_inside) / GATE_MARGIN, 0.0, 1.0))


def _with_latency(c: Classification, started: float) -> Classification:
    # ``dataclasses.replace`` runs the frozen __init__ field by field; a cached
    # answer on the event loop takes this copy of the same fields instead.
    out: Classification = object.__new__(Classification)
    fields = out.__dict__
    fields.update(c.__dict__)
    fields["latency_ms"] = (time.perf_counter() - started) * 1000
    return out
