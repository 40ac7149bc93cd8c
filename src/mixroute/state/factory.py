"""Build the state store named by the ``state:`` section of the config."""

from __future__ import annotations

import os
from collections.abc import Mapping

from mixroute.config.schema import StateConfig
from mixroute.state.base import StateStore
from mixroute.state.failover import FailoverStore
from mixroute.state.memory import MemoryStore
from mixroute.state.redis import RedisStore


def redis_url(config: StateConfig, env: Mapping[str, str] | None = None) -> str:
    """The Redis URL: the ``redis_url_env`` variable when set, else ``redis_url``.

    The URL may hold a password, so it comes from the environment in real
    deployments and is never logged.
    """
    env = os.environ if env is None else env
    if config.redis_url_env:
        from_env = env.get(config.redis_url_env, "").strip()
        if from_env:
            return from_env
    return config.redis_url


def build_state_store(
    config: StateConfig, env: Mapping[str, str] | None = None
) -> StateStore:
    """A ``MemoryStore``, or a Redis store (behind ``FailoverStore`` by default).

    Building does not connect: redis-py connects on first use, so a Redis that
    is down at start-up makes a ``FailoverStore`` begin degraded instead of
    refusing to start.
    """
    if config.backend == "memory":
        return MemoryStore()
    store = RedisStore.from_url(
        redis_url(config, env), prefix=config.key_prefix, timeout_s=config.timeout_s
    )
    if not config.fallback:
        return store
    return FailoverStore(store, MemoryStore(), reprobe_s=config.reprobe_s)
