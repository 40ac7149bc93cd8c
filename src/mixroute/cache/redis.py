"""The Redis cache backend, shared by replicas, without Redis's search module.

Debian's ``redis-server`` (7.0 here) ships without RediSearch, so there is no
``FT.CREATE`` / vector index on the server. Instead each scope's embeddings
are a Redis hash (entry key -> float32 bytes) and similarity is brute force in
numpy on the replica. That stays cheap because a scope (one tenant, model,
parameter set and conversation prefix) is bounded by
``max_entries_per_scope``, and each replica keeps the scope's matrix locally.
A lookup reads the scope's version token (a new random one on every change of
its vectors); when it moved, the replica lists the scope's entry keys and
fetches only the vectors it does not have.

Key layout under ``<prefix>cache:``: ``e:<entry>`` the payload with the TTL,
``v:<scope>`` the vectors, ``n:<scope>`` the version token, ``l:<scope>`` the
scope's LRU (sorted set of last-use µs), ``lru`` the global LRU of
``<scope>|<entry>``. Scripts derive some keys from the prefix, so they need a
standalone Redis (or a single shard), as usual for a cache.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis

from mixroute.cache.base import CANDIDATES, Similar, StoredEntry, Vector
from mixroute.state.redis import as_state_unavailable

# Use times in microseconds from the server clock, made strictly increasing by
# a tick key so LRU order holds even for calls within one microsecond. They
# stay below 2^53, exact in Lua's doubles; %.0f keeps every digit in strings.
_NOW_US = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', ARGV[1] .. 'tick') or '0')
if now <= last then
  now = last + 1
end
local nows = string.format('%.0f', now)
redis.call('SET', ARGV[1] .. 'tick', nows)
"""

# Removes every trace of entry e in scope s (prefix p); used by PUT and FORGET.
_DROP = """
local function drop(p, s, e)
  redis.call('DEL', p .. 'e:' .. e)
  redis.call('HDEL', p .. 'v:' .. s, e)
  redis.call('ZREM', p .. 'l:' .. s, e)
  redis.call('ZREM', p .. 'lru', s .. '|' .. e)
  if redis.call('EXISTS', p .. 'n:' .. s) == 1 then
    redis.call('SET', p .. 'n:' .. s, ARGV[#ARGV], 'KEEPTTL')
  end
end
local function drop_member(p, member)
  local bar = string.find(member, '|', 1, true)
  drop(p, string.sub(member, 1, bar - 1), string.sub(member, bar + 1))
end
"""

# ARGV: prefix, scope, entry, payload, vector ('' for none), ttl ms,
# max per scope, max total, version token (last, read by drop()).
_PUT = (
    _NOW_US
    + _DROP
    + """
local p, s, e = ARGV[1], ARGV[2], ARGV[3]
local ttl = tonumber(ARGV[6])
local cutoff = string.format('%.0f', now - ttl * 1000)
local stale = redis.call('ZRANGEBYSCORE', p .. 'lru', '-inf', cutoff, 'LIMIT', 0, 32)
for _, member in ipairs(stale) do drop_member(p, member) end

redis.call('SET', p .. 'e:' .. e, ARGV[4], 'PX', ttl)
if ARGV[5] ~= '' then
  redis.call('HSET', p .. 'v:' .. s, e, ARGV[5])
end
redis.call('ZADD', p .. 'l:' .. s, nows, e)
redis.call('ZADD', p .. 'lru', nows, s .. '|' .. e)

local extra = redis.call('ZCARD', p .. 'l:' .. s) - tonumber(ARGV[7])
if extra > 0 then
  local old = redis.call('ZRANGE', p .. 'l:' .. s, 0, extra - 1)
  for _, oe in ipairs(old) do drop(p, s, oe) end
end
extra = redis.call('ZCARD', p .. 'lru') - tonumber(ARGV[8])
if extra > 0 then
  local old = redis.call('ZRANGE', p .. 'lru', 0, extra - 1)
  for _, member in ipairs(old) do drop_member(p, member) end
end

if ARGV[5] ~= '' then
  redis.call('SET', p .. 'n:' .. s, ARGV[9], 'PX', ttl)
else
  redis.call('PEXPIRE', p .. 'n:' .. s, ttl)
end
redis.call('PEXPIRE', p .. 'v:' .. s, ttl)
redis.call('PEXPIRE', p .. 'l:' .. s, ttl)
return 1
"""
)

# ARGV: prefix, scope, entry. Returns {payload, version}: the payload (marked
# used) or false, and the scope's vector version token or false, so an exact
# miss learns in the same round trip whether its local matrix is current.
_GET = (
    _NOW_US
    + """
local p, s, e = ARGV[1], ARGV[2], ARGV[3]
local version = redis.call('GET', p .. 'n:' .. s)
local payload = redis.call('GET', p .. 'e:' .. e)
if payload then
  redis.call('ZADD', p .. 'l:' .. s, 'XX', nows, e)
  redis.call('ZADD', p .. 'lru', 'XX', nows, s .. '|' .. e)
end
return {payload, version}
"""
)

# ARGV: prefix, scope, entry, version token. Forgets an entry whose payload
# expired, unless it was stored again meanwhile.
_FORGET = (
    _DROP
    + """
if redis.call('EXISTS', ARGV[1] .. 'e:' .. ARGV[3]) == 1 then
  return 0
end
drop(ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

_LOCAL_SCOPES = 256  # scope matrices each replica keeps between lookups


def _as_bytes(raw: bytes | str) -> bytes:
    return raw.encode() if isinstance(raw, str) else bytes(raw)


@dataclass(frozen=True)
class _Matrix:
    version: bytes
    keys: list[str]
    vectors: Vector


class RedisCacheBackend:
    """A ``CacheBackend`` on Redis; raises ``StateUnavailable`` when Redis fails."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        ttl_s: float,
        max_entries: int,
        max_entries_per_scope: int,
        close_client: bool = False,
    ) -> None:
        self.client = client
        self._close_client = close_client
        self.prefix = f"{prefix}cache:"
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.max_entries = max_entries
        self.max_entries_per_scope = max_entries_per_scope
        self._put = client.register_script(_PUT)
        self._get = client.register_script(_GET)
        self._forget = client.register_script(_FORGET)
        self._matrices: OrderedDict[str, _Matrix] = OrderedDict()

    async def lookup(
        self, scope_key: str, key: str, similar: Similar | None
    ) -> StoredEntry | None:
        payload, version = await self._fetch(scope_key, key)
        if payload is not None:
            return StoredEntry(payload, 1.0, exact=True)
        if similar is None or version is None:
            return None

        dim = similar.embedding.shape[0]
        matrix = await self._matrix(scope_key, version, dim)
        if not matrix.keys:
            return None
        scores = matrix.vectors @ similar.embedding
        rows = np.flatnonzero(scores >= similar.threshold)
        best = rows[np.argsort(-scores[rows], kind="stable")][:CANDIDATES]
        for row in best:
            candidate = matrix.keys[row]
            found, _ = await self._fetch(scope_key, candidate)
            if found is None:
                with as_state_unavailable():
                    args = [self.prefix, scope_key, candidate, uuid.uuid4().hex]
                    await self._forget(keys=[], args=args)
            elif similar.accept(found):
                return StoredEntry(found, float(scores[row]), exact=False)
        return None

    async def _fetch(
        self, scope_key: str, key: str
    ) -> tuple[bytes | None, bytes | None]:
        with as_state_unavailable():
            payload, version = await self._get(
                keys=[], args=[self.prefix, scope_key, key]
            )
        return (
            None if payload is None else _as_bytes(payload),
            None if version is None else _as_bytes(version),
        )

    async def put(
        self, scope_key: str, key: str, embedding: Vector | None, payload: bytes
    ) -> None:
        vector = b"" if embedding is None else embedding.astype("<f4").tobytes()
        args: list[bytes | str | int] = [
            self.prefix,
            scope_key,
            key,
            payload,
            vector,
            self.ttl_ms,
            self.max_entries_per_scope,
            self.max_entries,
            uuid.uuid4().hex,
        ]
        with as_state_unavailable():
            await self._put(keys=[], args=args)

    async def close(self) -> None:
        self._matrices.clear()
        if self._close_client:
            await self.client.aclose()

    async def _matrix(self, scope_key: str, version: bytes, dim: int) -> _Matrix:
        """The scope's vectors: the local copy if it has ``version``, else the
        local copy brought up to date (only rows it lacks are fetched)."""
        local = self._matrices.get(scope_key)
        if local is None or local.vectors.shape[1] != dim:
            local = _Matrix(b"", [], np.zeros((0, dim), np.float32))
        if local.version != version:
            local = await self._sync(scope_key, version, local)
            self._matrices[scope_key] = local
        self._matrices.move_to_end(scope_key)
        while len(self._matrices) > _LOCAL_SCOPES:
            self._matrices.popitem(last=False)
        return local

    async def _sync(self, scope_key: str, version: bytes, local: _Matrix) -> _Matrix:
        name = f"{self.prefix}v:{scope_key}"
        with as_state_unavailable():
            current = [_as_bytes(k).decode() for k in await self.client.hkeys(name)]
        known = {key: row for row, key in enumerate(local.keys)}
        new = [key for key in current if key not in known]
        blobs: list[bytes | str | None] = []
        if new:
            with as_state_unavailable():
                blobs = await self.client.hmget(name, new)

        dim = local.vectors.shape[1]
        keys = [key for key in current if key in known]
        rows = [local.vectors[known[key]] for key in keys]
        for key, blob in zip(new, blobs, strict=True):
            # Gone since HKEYS, or written by an encoder of another width.
            if blob is not None and len(blob) == 4 * dim:
                keys.append(key)
                rows.append(np.frombuffer(_as_bytes(blob), dtype="<f4"))
        vectors = np.vstack(rows) if rows else np.zeros((0, dim), np.float32)
        return _Matrix(version, keys, vectors.astype(np.float32, copy=False))
