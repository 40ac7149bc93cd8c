"""Fixtures for the policy tests: a fake clock and an engine builder."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from policy_helpers import START, make_config

from mixroute.config.schema import MixrouteConfig
from mixroute.policy import FakeClock, MemoryPolicyStore, PolicyEngine

# tests/ is not a package; the shared redis fixture module lives there.
_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from redis_server import redis_server  # noqa: E402

__all__ = ["clock", "engine_for", "redis_server"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def engine_for(clock: FakeClock) -> Callable[..., PolicyEngine]:
    """Build an engine over an in-memory store with the fake clock."""

    def build(config: MixrouteConfig | None = None, **kw: Any) -> PolicyEngine:
        cfg = config or make_config()
        return PolicyEngine(cfg, MemoryPolicyStore(clock), clock, **kw)

    return build
