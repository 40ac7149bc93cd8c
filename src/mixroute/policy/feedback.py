"""Ratings per request, learned quality per route and model, per user too.

Every decided request is remembered (request id, who, route, model, prompt);
a rating (thumbs or 0..1) attaches to its request id. Ratings live in a
SQLite file, so learned scores survive restarts.

Learned quality is a Bayesian average: the configured quality ``q`` (route
``quality`` for the model, else the model's ``quality``) is a Beta prior
``Beta(q·k, (1-q)·k)`` with ``k = feedback.prior_strength``, and each rating
``r`` in 0..1 counts as ``r`` successes and ``1 - r`` failures, so the
posterior mean is ``(q·k + Σr) / (k + n)``. With no ratings it is ``q``; with
many it approaches the mean rating. Aggregates are recomputed from the file by
``refresh()``, which the engine runs off the event loop at most every
``feedback.refresh_s`` seconds once new ratings arrived; decisions read the
last snapshot. ``refresh`` also forgets unrated requests older than
``retain_days``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ClientError
from mixroute.state.bulk import insert_rows

log = logging.getLogger(__name__)
#: The writer thread inserts queued rows at least this often (seconds) ...
FLUSH_S = 0.5
#: ... and at once when this many are waiting.
FLUSH_ROWS = 512

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, ts REAL, "
    "owner TEXT NOT NULL, principal TEXT, route TEXT, model TEXT, prompt TEXT)",
    "CREATE TABLE IF NOT EXISTS ratings (request_id TEXT PRIMARY KEY, ts REAL, "
    "rating REAL NOT NULL)",
)
_THUMBS = {
    "up": 1.0,
    "thumbs_up": 1.0,
    "👍": 1.0,
    "down": 0.0,
    "thumbs_down": 0.0,
    "👎": 0.0,
}


def parse_rating(value: Any) -> float:
    """A rating in 0..1 from ``True``/``False``, ``"up"``/``"down"`` or a
    number in 0..1; raises ``ClientError`` (400) for anything else."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and 0.0 <= float(value) <= 1.0:
        return float(value)
    if isinstance(value, str) and value.strip().lower() in _THUMBS:
        return _THUMBS[value.strip().lower()]
    raise ClientError(
        f"rating {value!r} is not accepted; send true/false, 'up'/'down' or a "
        "number from 0 to 1",
        param="rating",
        code="invalid_rating",
    )


class FeedbackBook:
    """The SQLite book of remembered requests and their ratings."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(Path(path).expanduser()) if path != ":memory:" else path,
            check_same_thread=False,
            isolation_level=None,
        )
        with self._lock:
            # One row per request: WAL without a sync per commit keeps that
            # cheap; a crash loses at most the last moments of unrated rows.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                self._conn.execute(stmt)
        self.dirty = True
        # Rows from ``remember_later`` wait here for one writer thread, which
        # inserts them in batches: a thread hop and a commit per request cost
        # more than the rest of the policy engine together.
        self._pending: list[tuple[Any, ...]] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._writer: threading.Thread | None = None
        self._route: dict[tuple[str, str], tuple[float, int]] = {}
        self._user: dict[tuple[str, str, str], tuple[float, int]] = {}
        self.refresh()  # what earlier runs learned counts from the start

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the file."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=5)
        self.flush()
        with self._lock:
            self._conn.close()

    def remember_later(
        self,
        request_id: str,
        owner: str | None,
        principal: str | None,
        route: str | None,
        model: str,
        prompt: str,
        ts: float,
    ) -> None:
        """``remember`` without waiting: the row is queued (no I/O here, so it
        is safe on the event loop) and a writer thread inserts it within
        ``FLUSH_S``; ``rate`` writes the queue first, so a rating never misses
        its request."""
        row = (request_id, ts, owner or "-", principal, route, model, prompt)
        with self._pending_lock:
            self._pending.append(row)
            big = len(self._pending) >= FLUSH_ROWS
            if self._writer is None and not self._closing:
                self._writer = threading.Thread(
                    target=self._write_loop, name="mixroute-feedback", daemon=True
                )
                self._writer.start()
        if big:
            self._wake.set()

    def flush(self) -> None:
        """Insert every queued row in one transaction."""
        with self._pending_lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                insert_rows(self._conn, "INSERT OR IGNORE INTO requests", 7, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _write_loop(self) -> None:
        while not self._closing:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            try:
                self.flush()
            except sqlite3.Error:
                log.exception("feedback: writing queued requests failed")

    def remember(
        self,
        request_id: str,
        owner: str | None,
        principal: str | None,
        route: str | None,
        model: str,
        prompt: str,
        ts: float,
    ) -> None:
        """Keep what a later rating of ``request_id`` will be about. ``owner``
        is the API key id that made the request: only it may rate it. The
        first request with an id keeps it (a reused id cannot take over)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO requests VALUES (?, ?, ?, ?, ?, ?, ?)",
                (request_id, ts, owner or "-", principal, route, model, prompt),
            )

    def rate(
        self, request_id: str, rating: Any, ts: float, owner: str | None = None
    ) -> bool:
        """Record a rating (a later one replaces an earlier one); False when
        no request with that id was made by ``owner`` (the API key id).
        Raises ``ClientError`` for a bad rating."""
        value = parse_rating(rating)
        self.flush()
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM requests WHERE request_id = ? AND owner = ?",
                (request_id, owner or "-"),
            ).fetchone()
            if row is None:
                return False
            self._conn.execute(
                "INSERT OR REPLACE INTO ratings VALUES (?, ?, ?)",
                (request_id, ts, value),
            )
        self.dirty = True
        return True

    def refresh(self, forget_before: float | None = None) -> None:
        """Recompute the per-route and per-user aggregates from the file;
        first forget unrated requests remembered before ``forget_before``
        (epoch seconds). Blocking: run it in a thread on a server."""
        self.flush()  # queued requests are forgotten by the same rule
        self.dirty = False
        q = (
            "SELECT {cols}, SUM(g.rating), COUNT(*) FROM ratings g JOIN requests r "
            "USING (request_id) WHERE r.route IS NOT NULL GROUP BY {cols}"
        )
        with self._lock:
            if forget_before is not None:
                self._conn.execute(
                    "DELETE FROM requests WHERE ts < ? AND request_id NOT IN "
                    "(SELECT request_id FROM ratings)",
                    (forget_before,),
                )
            routes = self._conn.execute(q.format(cols="r.route, r.model")).fetchall()
            users = self._conn.execute(
                q.format(cols="r.principal, r.route, r.model")
            ).fetchall()
        self._route = {(r, m): (s, n) for r, m, s, n in routes}
        self._user = {(p, r, m): (s, n) for p, r, m, s, n in users if p is not None}

    def quality(self, route: str, model: str, prior: float, strength: float) -> float:
        """The posterior mean quality of ``model`` on ``route`` (module doc)."""
        s, n = self._route.get((route, model), (0.0, 0))
        return (prior * strength + s) / (strength + n)

    def counts(self, route: str, model: str) -> tuple[float, int]:
        """Sum of ratings and number of ratings of ``model`` on ``route``."""
        return self._route.get((route, model), (0.0, 0))

    def user_rating(self, principal: str, route: str, model: str) -> tuple[float, int]:
        """A user's mean rating of ``model`` on ``route`` and how many."""
        s, n = self._user.get((principal, route, model), (0.0, 0))
        return (s / n if n else 0.0), n

    def rated(self) -> Iterator[dict[str, Any]]:
        """Every rated request: id, prompt, route, model, rating, principal."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT r.request_id, r.prompt, r.route, r.model, g.rating, "
                "r.principal FROM ratings g JOIN requests r USING (request_id) "
                "ORDER BY g.ts"
            ).fetchall()
        for rid, prompt, route, model, rating, principal in rows:
            yield {
                "id": rid,
                "prompt": prompt,
                "route": route,
                "model": model,
                "rating": rating,
                "principal": principal,
            }


def training_rows(book: FeedbackBook, strong_models: set[str]) -> list[dict[str, Any]]:
    """Rated prompts as training rows for ``mixroute train``.

    Each row keeps ``prompt`` and its route as ``category`` (for the route
    head). A rating ≥ 0.5 counts as a correct answer. Difficulty labels follow
    what the rating shows: a cheap model rated well → ``weak_correct = 1`` and
    ``strong_correct = 1`` (a strong model is assumed at least as good); rated
    badly → ``weak_correct = 0``, ``strong_correct = 1``; a strong model rated
    badly → both 0; a strong model rated well says nothing about the cheap one,
    so that row has no difficulty labels.
    """
    rows = []
    for r in book.rated():
        good = r["rating"] >= 0.5
        row: dict[str, Any] = {
            "id": r["id"],
            "prompt": r["prompt"],
            "category": r["route"],
            "model": r["model"],
            "rating": r["rating"],
        }
        if r["model"] not in strong_models:
            row["weak_correct"] = int(good)
            row["strong_correct"] = 1
        elif not good:
            row["weak_correct"] = 0
            row["strong_correct"] = 0
        rows.append(row)
    return rows


def write_training_rows(rows: list[dict[str, Any]], out: Path) -> int:
    """Write ``rows`` as JSON lines to ``out``; the number written."""
    with out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


def feedback_path(config: MixrouteConfig) -> str:
    """Where the feedback book lives: ``policies.feedback.path``, else beside
    the usage ledger (in memory when the ledger is)."""
    if config.policies.feedback.path:
        return config.policies.feedback.path
    ledger = config.server.ledger_path
    if ledger == ":memory:":
        return ":memory:"
    return str(Path(ledger).expanduser().with_name("mixroute-feedback.sqlite"))


def merge_feedback_rows(config: MixrouteConfig, file: Path, feedback_db: Path) -> Path:
    """``file``'s training rows plus rows learned from ratings in
    ``feedback_db``, written beside ``file`` as ``<name>.feedback.jsonl``.

    The rows added match the kind ``file`` holds: difficulty rows (with
    ``weak_correct``) get the rated rows that carry difficulty labels, route
    rows (``prompt`` + ``category``) get every rated prompt with its route.
    The premium model (``policies.default_model``) counts as the strong one.
    Returns the merged file's path.
    """
    if not feedback_db.exists():
        raise ClientError(f'The feedback file "{feedback_db}" does not exist.')
    lines = file.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0]) if lines else {}
    difficulty = isinstance(first, dict) and "weak_correct" in first
    book = FeedbackBook(str(feedback_db))
    try:
        rows = training_rows(book, {config.policies.default_model})
    finally:
        book.close()
    added = []
    for row in rows:
        if difficulty and "weak_correct" in row:
            added.append(
                {k: row[k] for k in ("id", "prompt", "weak_correct", "strong_correct")}
            )
        elif not difficulty and row["category"]:
            added.append({"prompt": row["prompt"], "category": row["category"]})
    out = file.with_name(file.stem + ".feedback.jsonl")
    with out.open("w", encoding="utf-8") as f:
        for line in lines:
            if line.strip():
                f.write(line.rstrip("\n") + "\n")
        for row in added:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out
