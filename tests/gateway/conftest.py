"""Fixtures for gateway tests: fake upstreams for the three test models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes import FakeUpstream


@pytest.fixture
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    """Fake upstreams for small, medium and large."""
    fakes = {n: FakeUpstream(n).start() for n in ("small", "medium", "large")}
    try:
        yield fakes
    finally:
        for f in fakes.values():
            f.stop()


@pytest.fixture
def urls(upstreams: dict[str, FakeUpstream]) -> dict[str, str | None]:
    return {n: f.base_url for n, f in upstreams.items()}
