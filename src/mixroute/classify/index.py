"""The route index: every route's utterances as unit vectors, and their
embeddings cached on disk so a restart does not re-encode them.

It scores a text against each route as the mean of the two highest cosine
similarities to that route's utterances (one close paraphrase is not enough
on its own, two agreeing ones are), then turns the scores into probabilities
with a softmax at temperature ``UTTERANCE_TEMPERATURE``.

The disk cache is a plain ``.npy`` file named by a SHA-256 of the encoder's
model hash, the token limit and the utterances. A missing, corrupt or
unwritable cache only costs the time to encode again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("mixroute.classify")

UTTERANCE_TEMPERATURE = 0.05


def cache_dir(configured: str | None) -> Path:
    """``classifier.cache_dir``, else $XDG_CACHE_HOME/mixroute or ~/.cache/mixroute."""
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixroute"


def cache_key(model_id: str, utterances: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha256(model_id.encode())
    for route, text in utterances:
        h.update(b"\0" + route.encode() + b"\1" + text.encode("utf-8", "replace"))
    return h.hexdigest()[:32]


def cached_embeddings(
    directory: Path,
    key: str,
    count: int,
    compute: Callable[[], np.ndarray],
) -> np.ndarray:
    """The array cached under ``key`` if sound, else ``compute()`` (then cached)."""
    path = directory / f"utterances-{key}.npy"
    try:
        cached = np.load(path, allow_pickle=False)
        if cached.ndim == 2 and cached.shape[0] == count and np.isfinite(cached).all():
            sound: np.ndarray = cached.astype(np.float32)
            return sound
        log.warning("ignoring embedding cache %s: wrong shape or values", path)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, EOFError) as exc:
        log.warning("ignoring unreadable embedding cache %s: %s", path, exc)
    vectors = compute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write embedding cache in %s: %s", directory, exc)
    return vectors


class RouteIndex:
    """Unit vectors of utterances with their routes; scores texts per route."""

    def __init__(
        self, routes: Sequence[str], labels: Sequence[str], vectors: np.ndarray
    ) -> None:
        self.routes = tuple(routes)
        self._vectors = vectors.astype(np.float32)
        self._members = [
            np.array([i for i, r in enumerate(labels) if r == route], dtype=np.int64)
            for route in self.routes
        ]

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Per route, the mean of the top-2 cosines to ``query`` (a unit vector)."""
        sims = self._vectors @ query.astype(np.float32) if len(self._vectors) else None
        out = np.full(len(self.routes), -1.0)
        for k, members in enumerate(self._members):
            if sims is None or len(members) == 0:
                continue
            top = np.sort(sims[members])[-2:]
            out[k] = float(top.mean())
        return out

    def proba(self, query: np.ndarray) -> np.ndarray:
        """Softmax of the route similarities at ``UTTERANCE_TEMPERATURE``."""
        z = self.similarities(query) / UTTERANCE_TEMPERATURE
        e = np.exp(z - z.max())
        out: np.ndarray = e / e.sum()
        return out
