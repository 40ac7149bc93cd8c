"""Fixtures for the guard tests: a real redis-server on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

# tests/ is not a package; the shared redis fixture module lives there.
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from redis_server import redis_server  # noqa: E402

__all__ = ["redis_server"]
