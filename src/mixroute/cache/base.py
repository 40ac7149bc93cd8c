"""The cache's values and the interface of its storage backends.

A backend stores opaque payloads under an entry key, grouped by scope key, with
an optional unit-norm embedding per entry for similarity search inside the
scope. Backends own TTL and size bounds (LRU eviction); the policy of what may
be cached and which threshold applies lives in ``ResponseCache``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]

# Best similarity matches tried per lookup, past expired or rejected ones.
CANDIDATES = 4


@dataclass(frozen=True)
class CachedAnswer:
    """A cached response, found by exact match or by similarity.

    ``response`` is the OpenAI ``chat.completion`` JSON as stored (a fresh
    copy the caller may change). ``similarity`` is the cosine of the match
    (1.0 for exact); ``age_s`` how long ago the answer was stored.
    """

    response: dict[str, Any]
    exact: bool
    similarity: float
    age_s: float


@dataclass(frozen=True)
class StoredEntry:
    """A payload as a backend returns it, and how it was found."""

    payload: bytes
    similarity: float
    exact: bool


@dataclass(frozen=True)
class Similar:
    """The similarity part of a lookup: a unit ``embedding`` of the text, the
    ``threshold`` a match needs, and ``accept``, which a candidate's payload
    must also pass (a few best candidates are tried)."""

    embedding: Vector
    threshold: float
    accept: Callable[[bytes], bool]


class CacheBackend(Protocol):
    """Storage for cache entries; never decides what is cacheable."""

    async def lookup(
        self, scope_key: str, key: str, similar: Similar | None
    ) -> StoredEntry | None:
        """The live entry under ``key``; failing that, with ``similar``, the
        most similar accepted live entry in the scope. Marks it recently used.
        """
        ...

    async def put(
        self, scope_key: str, key: str, embedding: Vector | None, payload: bytes
    ) -> None:
        """Store or replace an entry; evicts least recently used beyond bounds."""
        ...

    async def close(self) -> None: ...


def as_unit_vector(embedding: object) -> Vector | None:
    """``embedding`` as a 1-D unit-norm float32 vector, or None if unusable.

    Accepts one row or a (1, d) matrix as ``Classifier.embed`` returns it; a
    zero or non-finite vector is unusable.
    """
    try:
        vector = np.asarray(embedding, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if vector.ndim == 2 and vector.shape[0] == 1:
        vector = vector[0]
    if vector.ndim != 1:
        return None
    norm = float(np.linalg.norm(vector))
    if vector.size == 0 or not np.isfinite(norm) or norm == 0.0:
        return None
    if abs(norm - 1.0) > 1e-3:
        vector = vector / np.float32(norm)
    return vector
