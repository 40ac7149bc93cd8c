"""Shared fixtures: fake upstreams on loopback (see ``fakes.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes import FakeUpstream


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """One OpenAI-compatible fake upstream on 127.0.0.1, stopped after the test."""
    with FakeUpstream("fake") as upstream:
        yield upstream
