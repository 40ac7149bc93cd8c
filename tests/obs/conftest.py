"""Fixtures of the observability tests: fake upstreams on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from obs_helpers import PRICES

from fakes import FakeUpstream


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    """Fake upstreams for small, medium and large on loopback."""
    started = {n: FakeUpstream(n).start() for n in PRICES}
    try:
        yield started
    finally:
        for f in started.values():
            f.stop()


@pytest.fixture
def urls(fakes: dict[str, FakeUpstream]) -> dict[str, str]:
    return {n: f.base_url for n, f in fakes.items()}
