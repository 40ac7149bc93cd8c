"""The semantic response cache: what may be stored, and how it is found.

``lookup`` tries the exact text first (one key read), then, when the scope
allows it and an embedding is given, the most similar stored text in the same
scope at or above the route's threshold that has the same numbers in the same
order (see ``scope.literals``). The embedding is the classifier's
(``Classifier.embed``), reused: the cache never calls a model itself.

Only complete answers are stored, and answers to sampled requests
(temperature > 0 or unset) only when ``cache_sampled`` is on. A failing backend
(Redis gone) makes every call a miss and every store a no-op, with one WARNING
per outage; the cache never raises on the request path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from mixroute.cache.base import CacheBackend, CachedAnswer, Similar, as_unit_vector
from mixroute.cache.scope import CacheScope, chat_scope, entry_key, literals
from mixroute.config.schema import CacheConfig
from mixroute.state.base import StateUnavailable

log = logging.getLogger("mixroute.cache")

# A choice that ended for one of these reasons is a whole answer; a missing
# reason means a cut stream, and a content filter stop is not worth repeating.
COMPLETE_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "function_call"})

# Answers larger than this are not stored: one entry must not crowd out
# thousands, and a big answer is rarely asked for again word for word.
MAX_ANSWER_BYTES = 1 << 20


def is_complete_answer(answer: Mapping[str, Any]) -> bool:
    """Whether ``answer`` is a whole ``chat.completion`` fit to be replayed."""
    choices = answer.get("choices")
    if answer.get("object") != "chat.completion" or not isinstance(choices, list):
        return False
    return bool(choices) and all(
        isinstance(c, Mapping)
        and isinstance(c.get("message"), Mapping)
        and c.get("finish_reason") in COMPLETE_FINISH_REASONS
        for c in choices
    )


def _literals_of(payload: bytes) -> str | None:
    value = json.loads(payload).get("literals")
    return value if isinstance(value, str) else None


class ResponseCache:
    """Looks up and stores answers in a ``CacheBackend`` under a ``CacheConfig``."""

    def __init__(self, backend: CacheBackend, config: CacheConfig) -> None:
        self.backend = backend
        self.config = config
        self._failing = False

    @staticmethod
    def chat_scope(
        tenant: str, model: str, body: Mapping[str, Any]
    ) -> tuple[CacheScope, str]:
        """The scope and matched text of a chat request (see ``cache.scope``)."""
        return chat_scope(tenant, model, body)

    def threshold(self, route: str | None) -> float | None:
        """The similarity needed on ``route``; None means exact matches only."""
        if route is not None and route in self.config.route_similarity:
            return self.config.route_similarity[route]
        return self.config.similarity

    async def lookup(
        self,
        scope: CacheScope,
        text: str,
        embedding: object | None = None,
        *,
        route: str | None = None,
    ) -> CachedAnswer | None:
        """A stored answer for ``text`` in ``scope``, or None on a miss.

        ``embedding`` is the classifier's embedding of ``text`` (one row);
        ``route`` picks the similarity threshold.
        """
        if not self.config.enabled:
            return None
        threshold = self.threshold(route)
        vector = as_unit_vector(embedding) if embedding is not None else None

        similar = None
        if scope.semantic and vector is not None and threshold is not None:
            numbers = literals(text)
            similar = Similar(
                vector, threshold, lambda payload: _literals_of(payload) == numbers
            )

        try:
            found = await self.backend.lookup(
                scope.key, entry_key(scope, text), similar
            )
        except StateUnavailable as exc:
            self._note_failure(exc)
            return None
        self._note_success()

        if found is None:
            return None
        stored = json.loads(found.payload)
        return CachedAnswer(
            response=stored["response"],
            exact=found.exact,
            similarity=found.similarity,
            age_s=max(0.0, time.time() - float(stored["created"])),
        )

    def storable(self, scope: CacheScope) -> bool:
        """Whether answers in ``scope`` may be stored under this config."""
        return self.config.enabled and (self.config.cache_sampled or not scope.sampled)

    async def store(
        self,
        scope: CacheScope,
        text: str,
        embedding: object | None,
        answer: Mapping[str, Any],
        *,
        complete: bool = True,
    ) -> bool:
        """Store ``answer`` for ``text`` in ``scope``; True if it was stored.

        ``complete`` is the caller's word that the answer was received whole
        (a stream that ran to its end, not cut or cancelled); the answer must
        also have a finish reason on every choice.
        """
        if not (complete and self.storable(scope) and is_complete_answer(answer)):
            return False
        vector = as_unit_vector(embedding) if embedding is not None else None
        payload = json.dumps(
            {"created": time.time(), "literals": literals(text), "response": answer},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        if len(payload) > MAX_ANSWER_BYTES:
            return False

        try:
            await self.backend.put(
                scope.key,
                entry_key(scope, text),
                vector if scope.semantic else None,
                payload,
            )
        except StateUnavailable as exc:
            self._note_failure(exc)
            return False
        self._note_success()
        return True

    async def close(self) -> None:
        await self.backend.close()

    def _note_failure(self, exc: StateUnavailable) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "The response cache is unavailable; requests miss it until it "
                "returns: %s",
                exc,
            )

    def _note_success(self) -> None:
        if self._failing:
            self._failing = False
            log.info("The response cache is available again")
