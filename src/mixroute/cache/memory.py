"""The in-process cache backend: an LRU of entries and a numpy matrix per scope.

Similarity search is one matrix-vector product over the scope's rows (unit
vectors, so the product is the cosine). Rows are kept dense: removing an entry
moves the scope's last row into its place. Single-threaded: event loop only.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mixroute.cache.base import CANDIDATES, Similar, StoredEntry, Vector

# Expired entries are found when touched; each put also checks this many of
# the least recently used, so entries nobody asks for again still go.
_EXPIRY_SCAN = 8


@dataclass
class _Entry:
    scope_key: str
    payload: bytes
    expires_at: float


@dataclass
class _ScopeIndex:
    """One scope's LRU order and rows: ``vectors[rows[key]]`` embeds ``key``.

    The width is set by the first embedding; later ones of another width
    (a different encoder) are kept for exact matches only.
    """

    dim: int | None = None
    vectors: Vector = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    keys: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    lru: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def upsert(self, key: str, vector: Vector) -> None:
        if self.dim is None:
            self.dim = vector.shape[0]
            self.vectors = np.zeros((8, self.dim), dtype=np.float32)
        if vector.shape[0] != self.dim:
            return
        row = self.rows.get(key)
        if row is None:
            row = len(self.keys)
            if row == len(self.vectors):
                grown = np.zeros((2 * row, self.dim), dtype=np.float32)
                grown[:row] = self.vectors
                self.vectors = grown
            self.keys.append(key)
            self.rows[key] = row
        self.vectors[row] = vector

    def remove(self, key: str) -> None:
        self.lru.pop(key, None)
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = len(self.keys) - 1
        moved = self.keys.pop()
        if row != last:
            self.vectors[row] = self.vectors[last]
            self.keys[row] = moved
            self.rows[moved] = row

    def ranked(self, vector: Vector, threshold: float) -> list[tuple[str, float]]:
        if not self.keys or vector.shape[0] != self.dim:
            return []
        scores = self.vectors[: len(self.keys)] @ vector
        rows = np.flatnonzero(scores >= threshold)
        order = rows[np.argsort(-scores[rows], kind="stable")]
        return [(self.keys[i], float(scores[i])) for i in order]


class MemoryCacheBackend:
    """A ``CacheBackend`` in this process, bounded in total and per scope (LRU)."""

    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int,
        max_entries_per_scope: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_entries_per_scope = max_entries_per_scope
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._scopes: dict[str, _ScopeIndex] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def lookup(
        self, scope_key: str, key: str, similar: Similar | None
    ) -> StoredEntry | None:
        entry = self._live(key)
        if entry is not None and entry.scope_key == scope_key:
            self._mark_used(key, entry)
            return StoredEntry(entry.payload, 1.0, exact=True)
        index = self._scopes.get(scope_key)
        if similar is None or index is None:
            return None

        ranked = index.ranked(similar.embedding, similar.threshold)
        for candidate, score in ranked[:CANDIDATES]:
            entry = self._live(candidate)
            if entry is not None and similar.accept(entry.payload):
                self._mark_used(candidate, entry)
                return StoredEntry(entry.payload, score, exact=False)
        return None

    async def put(
        self, scope_key: str, key: str, embedding: Vector | None, payload: bytes
    ) -> None:
        self._drop_expired()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(scope_key, payload, 0.0)
        entry.payload = payload
        entry.expires_at = self._clock() + self.ttl_s
        index = self._scopes.setdefault(scope_key, _ScopeIndex())
        if embedding is not None:
            index.upsert(key, embedding)
        self._mark_used(key, entry)

        while len(index.lru) > self.max_entries_per_scope:
            self._remove(next(iter(index.lru)))
        while len(self._entries) > self.max_entries:
            self._remove(next(iter(self._entries)))

    async def close(self) -> None:
        self._entries.clear()
        self._scopes.clear()

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            self._remove(key)
            return None
        return entry

    def _mark_used(self, key: str, entry: _Entry) -> None:
        self._entries.move_to_end(key)
        index = self._scopes.get(entry.scope_key)
        if index is not None:
            index.lru[key] = None
            index.lru.move_to_end(key)

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        index = self._scopes.get(entry.scope_key)
        if index is None:
            return
        index.remove(key)
        if not index.lru:
            del self._scopes[entry.scope_key]

    def _drop_expired(self) -> None:
        now = self._clock()
        oldest = itertools.islice(self._entries.items(), _EXPIRY_SCAN)
        for key in [k for k, e in oldest if e.expires_at <= now]:
            self._remove(key)
