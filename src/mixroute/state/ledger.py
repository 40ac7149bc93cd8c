"""The SQLite usage ledger: exactly one row per request, written off the loop.

Rows go onto a queue; one writer thread owns the connection and writes them in
batches inside a transaction, so the event loop never waits on the disk.
``close()`` drains the queue before it returns.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from mixroute.state.bulk import insert_rows

log = logging.getLogger("mixroute.ledger")
T = TypeVar("T")
_BATCH = 512


class UsageRow(NamedTuple):
    """One request as the ledger records it. Costs in USD, times in ms.

    A named tuple: immutable, built several times faster than a frozen
    dataclass (one is built per request), and its values in column order are
    the row itself."""

    request_id: str
    ts: float
    key: str | None
    route: str | None
    confidence: float | None
    rule: str | None
    model: str | None
    models_tried: str
    status: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    baseline_cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    stream: bool
    error: str | None
    cached: bool = False  # answered from the response cache


COLUMNS = UsageRow._fields
_TYPES = {
    "request_id": "TEXT NOT NULL",
    "ts": "REAL NOT NULL",
    "status": "INTEGER NOT NULL",
    "input_tokens": "INTEGER NOT NULL",
    "output_tokens": "INTEGER NOT NULL",
    "cost_usd": "REAL NOT NULL",
    "baseline_cost_usd": "REAL NOT NULL",
    "latency_ms": "REAL NOT NULL",
    "confidence": "REAL",
    "ttft_ms": "REAL",
    "stream": "INTEGER NOT NULL",
    "cached": "INTEGER NOT NULL DEFAULT 0",
}
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS usage ("
    + ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in COLUMNS)
    + ")"
)
_INSERT_HEAD = f"INSERT INTO usage ({', '.join(COLUMNS)})"


def connect(path: str) -> sqlite3.Connection:
    """Open (and create) a ledger database with the usage table and WAL mode."""
    if path != ":memory:":
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(usage)")}
    for column in COLUMNS:
        if column not in have:  # a ledger written before the column existed
            kind = _TYPES.get(column, "TEXT")
            conn.execute(f"ALTER TABLE usage ADD COLUMN {column} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts)")
    return conn


class _Call:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


class Ledger:
    """Append-only usage rows on a single writer thread."""

    def __init__(self, path: str, linger_s: float = 0.05) -> None:
        self.path = path
        self.linger_s = linger_s
        self._queue: queue.SimpleQueue[UsageRow | _Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        """Open the database on the writer thread; raise if it cannot be opened."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name="mixroute-ledger", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def record(self, row: UsageRow) -> None:
        """Queue one row; never blocks."""
        self._queue.put(row)

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``fn(connection)`` on the writer thread after queued rows."""
        item = _Call(fn)
        self._queue.put(item)
        return item.future

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every row queued so far is committed."""
        if self._thread is not None and self._thread.is_alive():
            self.call(lambda conn: None).result(timeout)

    def rows(self) -> list[dict[str, Any]]:
        """All rows, oldest first (for tests and small tools)."""

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM usage ORDER BY ts")
            return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]

        return self.call(read).result(10.0)

    def close(self) -> None:
        """Write every queued row, then stop the writer thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=30.0)
        self._thread = None

    def _run(self) -> None:
        try:
            conn = connect(self.path)
        except (sqlite3.Error, OSError) as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, UsageRow):
                # Let rows gather: one wake-up and one transaction for many
                # requests costs the event loop far less than one each.
                time.sleep(self.linger_s)
            batch: list[UsageRow] = []
            stop = False
            calls: list[_Call] = []
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, _Call):
                    calls.append(item)
                    break
                else:
                    batch.append(item)
                if stop or len(batch) >= _BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(conn, batch)
            for call in calls:
                try:
                    call.future.set_result(call.fn(conn))
                except Exception as exc:
                    call.future.set_exception(exc)
            if stop:
                return

    def _write(self, conn: sqlite3.Connection, batch: list[UsageRow]) -> None:
        if not batch:
            return
        try:
            with conn:
                conn.execute("BEGIN")
                insert_rows(conn, _INSERT_HEAD, len(COLUMNS), batch)
        except sqlite3.Error:
            log.exception("could not write %d usage rows to the ledger", len(batch))
