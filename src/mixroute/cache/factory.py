"""Build the response cache named by the ``cache:`` section of the config."""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from mixroute.cache.base import CacheBackend
from mixroute.cache.memory import MemoryCacheBackend
from mixroute.cache.redis import RedisCacheBackend
from mixroute.cache.response import ResponseCache
from mixroute.config.schema import CacheConfig, StateConfig
from mixroute.state.base import StateStore
from mixroute.state.factory import redis_url
from mixroute.state.failover import FailoverStore
from mixroute.state.redis import RedisStore, connect


def _shared_client(store: StateStore | None) -> aioredis.Redis | None:
    if isinstance(store, FailoverStore):
        store = store.primary
    return store.client if isinstance(store, RedisStore) else None


def build_response_cache(
    cache: CacheConfig,
    state: StateConfig,
    store: StateStore | None = None,
    env: Mapping[str, str] | None = None,
) -> ResponseCache:
    """A ``ResponseCache`` on memory or on Redis.

    ``backend: auto`` follows ``state.backend``. On Redis the cache shares the
    state store's client when ``store`` is one (plain or behind failover), and
    otherwise opens its own from the ``state`` settings.
    """
    backend: CacheBackend
    kind = state.backend if cache.backend == "auto" else cache.backend
    if kind == "memory":
        backend = MemoryCacheBackend(
            ttl_s=cache.ttl_s,
            max_entries=cache.max_entries,
            max_entries_per_scope=cache.max_entries_per_scope,
        )
        return ResponseCache(backend, cache)

    client = _shared_client(store)
    owned = client is None
    if client is None:
        client = connect(redis_url(state, env), timeout_s=state.timeout_s)
    backend = RedisCacheBackend(
        client,
        prefix=state.key_prefix,
        ttl_s=cache.ttl_s,
        max_entries=cache.max_entries,
        max_entries_per_scope=cache.max_entries_per_scope,
        close_client=owned,
    )
    return ResponseCache(backend, cache)
