"""Fixtures for the replica, reload and shutdown tests: fake upstreams and a
real redis-server; the server processes are in ``replica_helpers``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ is not a package; the shared fakes and redis fixture live there.
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from replica_helpers import MODELS  # noqa: E402

from fakes import FakeUpstream  # noqa: E402
from redis_server import make_redis_server, redis_server  # noqa: E402

__all__ = ["make_redis_server", "redis_server"]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    fakes = {name: FakeUpstream(name).start() for name in MODELS}
    yield fakes
    for fake in fakes.values():
        fake.stop()


@pytest.fixture(scope="module")
def urls(upstreams: dict[str, FakeUpstream]) -> dict[str, str]:
    return {name: fake.base_url for name, fake in upstreams.items()}
