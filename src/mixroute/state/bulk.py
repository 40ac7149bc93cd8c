"""Many rows in one SQLite statement.

``executemany`` steps its statement once per row, and Python's sqlite3 gives
up and takes back the GIL around every step: under load each step makes the
event loop's thread hand the GIL over and wait for it again. One ``INSERT``
with many ``VALUES`` rows steps once for all of them.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

# SQLite's historical bound on the ``?`` of one statement (newer builds allow
# 32766); staying under it works on every build.
_MAX_VARIABLES = 999


def insert_rows(
    conn: sqlite3.Connection, head: str, width: int, rows: Sequence[Sequence[Any]]
) -> None:
    """Run ``head VALUES (...), (...), ...`` for ``rows`` of ``width`` values,
    as few statements as the variable bound allows. ``head`` is the statement
    up to ``VALUES``, e.g. ``INSERT INTO t (a, b)``."""
    per = max(1, _MAX_VARIABLES // width)
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        conn.execute(_statement(head, width, len(part)), _flat(part))


@functools.lru_cache(maxsize=64)
def _statement(head: str, width: int, count: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return f"{head} VALUES {','.join([one] * count)}"


def _flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(rows))
