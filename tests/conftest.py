"""Shared fixtures: fake upstreams on loopback (see ``fakes.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes import FakeUpstream


@pytest.fixture(autouse=True)
def _own_working_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test runs in a folder of its own, so files mixroute keeps beside the
    working folder by default (usage ledger, client keys, feedback) never leak in
    from the developer's checkout or between tests: a key created by hand in the
    repo root would otherwise switch authentication on for the whole suite."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """One OpenAI-compatible fake upstream on 127.0.0.1, stopped after the test."""
    with FakeUpstream("fake") as upstream:
        yield upstream
