"""Client key checking for the gateway: ``Authorization: Bearer mr-...``.

Verified keys are trusted from memory for ``auth.cache_ttl_s`` seconds, so the
scrypt cost is paid about once per key per period and a revocation takes effect
within that period. Keys with an unknown id are refused without hashing, so a
flood of made-up keys costs next to nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ClientError, ConfigError
from mixroute.state.keys import ClientKey, KeyStore, open_key_store, unauthorized

log = logging.getLogger("mixroute.guards.auth")

_MAX_CACHE = 10_000


class Authenticator:
    """Decides whether a request's ``Authorization`` header names a live key."""

    def __init__(
        self,
        store: KeyStore,
        *,
        mode: str = "auto",
        cache_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.mode = mode
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        # sha256(presented key) -> (record or None for a wrong key, expiry)
        self._cache: dict[bytes, tuple[ClientKey | None, float]] = {}
        self._enabled_until = -1.0
        self._enabled = False

    @classmethod
    def from_config(cls, config: MixrouteConfig) -> Authenticator:
        """Open the key store that ``auth:`` names (SQLite or the shared Redis)."""
        # The server never creates the SQLite file: ``keys create`` does.
        store = open_key_store(config, create=False)
        auth = config.auth
        return cls(store, mode=auth.mode, cache_ttl_s=auth.cache_ttl_s)

    @property
    def enabled(self) -> bool:
        """``on``; or ``auto`` once any key was made (checked every TTL).

        Revoked keys count: revoking the last key must not open the gateway.
        """
        if self.mode != "auto":
            return self.mode == "on"
        now = self._clock()
        if now >= self._enabled_until:
            self._enabled = self.store.has_keys()
            self._enabled_until = now + self.cache_ttl_s
        return self._enabled

    async def _enabled_now(self) -> bool:
        if self.mode != "auto":
            return self.mode == "on"
        now = self._clock()
        if now >= self._enabled_until:
            self._enabled = await asyncio.to_thread(self.store.has_keys)
            self._enabled_until = now + self.cache_ttl_s
        return self._enabled

    async def authenticate(self, authorization: str | None) -> ClientKey | None:
        """The caller's key, or ``None`` when auth is off.

        Raises a 401 ``ClientError`` (code ``invalid_api_key``) when auth is on
        and the header is missing, malformed, unknown or revoked.
        """
        try:
            if not await self._enabled_now():
                return None
            key = _bearer(authorization)
            digest = hashlib.sha256(key.encode("utf-8")).digest()
            now = self._clock()
            hit = self._cache.get(digest)
            if hit is not None and hit[1] > now:
                record = hit[0]
            else:
                # scrypt takes tens of milliseconds: keep it off the event loop.
                record = await asyncio.to_thread(self.store.verify, key)
                if len(self._cache) >= _MAX_CACHE:
                    self._prune(now)
                self._cache[digest] = (record, now + self.cache_ttl_s)
        except ConfigError:
            # The key store is unreachable: refuse rather than let anyone in.
            log.error("client key store unavailable; refusing requests")
            raise ClientError(
                "Client keys cannot be checked right now; try again shortly.",
                status=503,
                code="auth_unavailable",
                type="server_error",
                headers={"retry-after": "5"},
            ) from None
        if record is None:
            raise unauthorized(
                "The API key is invalid or revoked. Send a mixroute client key as "
                "'Authorization: Bearer mr-...'."
            )
        return record

    def forget(self) -> None:
        """Drop cached verdicts (after a revoke in this process)."""
        self._cache.clear()
        self._enabled_until = -1.0

    def _prune(self, now: float) -> None:
        for digest in [d for d, (_, exp) in self._cache.items() if exp <= now]:
            del self._cache[digest]
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise unauthorized(
            "No API key was sent. Send a mixroute client key as "
            "'Authorization: Bearer mr-...'."
        )
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise unauthorized(
            "The Authorization header must be 'Bearer' followed by a mixroute "
            "client key."
        )
    return value.strip()


def check_route(key: ClientKey | None, route: str) -> None:
    """Raise a 403 ``ClientError`` when ``key`` may not use ``route``."""
    if key is None or key.allows_route(route):
        return
    raise ClientError(
        f'The client key "{key.name}" may not use the route "{route}"; it is '
        f"limited to: {', '.join(key.routes)}.",
        status=403,
        code="route_not_allowed",
        type="permission_error",
    )
