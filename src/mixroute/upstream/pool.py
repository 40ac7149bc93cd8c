"""The shared upstream client: one aiohttp session, timeouts, retries, breakers.

Every provider call goes through ``UpstreamPool``. It owns the only
``aiohttp.ClientSession`` (a sized, keep-alive connection pool), applies each
model's connect / read / total timeouts, retries connect errors, 5xx and 429
with jittered exponential back-off (honouring ``Retry-After`` up to a cap),
and keeps one circuit breaker per model. All aiohttp exceptions are mapped to
the ``UpstreamError`` tree here and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp

from mixroute import __version__, wirejson
from mixroute.config.schema import MixrouteConfig, ModelConfig
from mixroute.errors import (
    UnsendableRequest,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from mixroute.providers.base import UpstreamRequest
from mixroute.upstream.breaker import Breaker, CircuitBreaker

log = logging.getLogger("mixroute.upstream")
T = TypeVar("T")
USER_AGENT = f"mixroute/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off between attempts, in seconds."""

    base_delay_s: float = 0.25
    max_delay_s: float = 4.0
    retry_after_cap_s: float = 8.0


def is_client_fault(exc: BaseException) -> bool:
    """A 4xx that blames the request itself: never retried, never sent on."""
    return (
        isinstance(exc, UpstreamStatusError)
        and exc.status is not None
        and 400 <= exc.status < 500
        and exc.status not in (408, 409, 429)
    )


def dumps(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON bytes, as sent to clients (an upstream's lone surrogate
    escape, which has no UTF-8 form, goes out escaped again)."""
    try:
        return wirejson.dumps(payload)
    except UnicodeEncodeError:
        return json.dumps(payload, separators=(",", ":")).encode()


class UpstreamPool:
    """Sends provider requests for every model over one shared session."""

    def __init__(
        self, config: MixrouteConfig, retry: RetryPolicy | None = None
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.pool_size = config.server.upstream_pool_size
        # Replaced by shared breakers when state lives in Redis (api.app).
        self.breakers: dict[str, Breaker] = {
            m.name: CircuitBreaker(m.circuit_breaker) for m in config.models
        }
        self._timeouts = {
            m.name: aiohttp.ClientTimeout(
                total=m.timeouts.total,
                sock_connect=m.timeouts.connect,
                sock_read=m.timeouts.read,
            )
            for m in config.models
        }
        self._keys = {
            m.name: os.environ.get(m.api_key_env) if m.api_key_env else None
            for m in config.models
        }
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the shared session (call on the serving event loop)."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.pool_size,
                limit_per_host=0,
                keepalive_timeout=30.0,
                ttl_dns_cache=300,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"user-agent": USER_AGENT},
                auto_decompress=True,
                trust_env=False,
                # One session serves every client: a cookie an upstream sets
                # must never ride along on another client's request.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def api_key(self, model: str) -> str | None:
        """The provider key for ``model`` from its environment variable."""
        return self._keys.get(model)

    def healthy(self, model: ModelConfig) -> bool:
        return model.configured and self.breakers[model.name].state != "open"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("UpstreamPool.start() was not called")
        return self._session

    async def request_answer(
        self, model: ModelConfig, req: UpstreamRequest, headers: Mapping[str, str]
    ) -> tuple[bytes, Any]:
        """POST ``req``; the bytes of a 2xx answer and their decoded JSON."""

        async def attempt() -> tuple[bytes, Any]:
            async with self._post(model, req, headers, stream=False) as resp:
                await self._check_status(model, resp)
                raw = await resp.read()
                try:
                    return raw, wirejson.loads(raw)
                except ValueError:
                    raise UpstreamProtocolError(
                        "The upstream answer is not JSON.", model=model.name
                    ) from None

        return await self._call(model, attempt)

    async def open_stream(
        self, model: ModelConfig, req: UpstreamRequest, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """POST a streaming ``req``; the caller must close the returned response."""

        async def attempt() -> aiohttp.ClientResponse:
            resp: aiohttp.ClientResponse = await self._post(
                model, req, headers, stream=True
            )
            try:
                await self._check_status(model, resp)
            except BaseException:
                resp.close()
                raise
            return resp

        return await self._call(model, attempt)

    async def iter_body(
        self, model: ModelConfig, resp: aiohttp.ClientResponse
    ) -> AsyncIterator[bytes]:
        """The body bytes as they arrive; bytes received before a drop come first.

        aiohttp's ``readany`` raises a stored connection error before handing
        out data already buffered (aiohttp/streams.py ``readany``), so content
        sent just before a drop would be lost; we take that buffer ourselves.
        """
        content = resp.content
        while True:
            try:
                chunk = await content.readany()
            except Exception as exc:
                rest = _salvage(content)
                if rest:
                    yield rest
                raise self._map(exc, model) from None
            if not chunk:
                return
            yield chunk

    def _post(
        self,
        model: ModelConfig,
        req: UpstreamRequest,
        headers: Mapping[str, str],
        *,
        stream: bool,
    ) -> Any:
        all_headers = {**headers, **req.headers}
        if stream:
            all_headers["accept"] = "text/event-stream"
        try:
            data = wirejson.dumps(req.json)
        except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
            # Our body, not the upstream, is at fault: no breaker failure.
            raise UnsendableRequest(
                "The request cannot be encoded as UTF-8 JSON (a lone surrogate?).",
                code="invalid_encoding",
            ) from None
        return self.session.post(
            req.url,
            data=data,
            headers=all_headers,
            timeout=self._timeouts[model.name],
            allow_redirects=False,
        )

    async def _check_status(
        self, model: ModelConfig, resp: aiohttp.ClientResponse
    ) -> None:
        if resp.status < 400:
            return
        try:
            body = await resp.read()
        except Exception:
            body = b""
        raise UpstreamStatusError(
            f"The upstream answered with HTTP status {resp.status}.",
            model=model.name,
            status=resp.status,
            retry_after=_retry_after(resp.headers.get("retry-after")),
            body=body[:65536],
        )

    async def _call(self, model: ModelConfig, attempt: Callable[[], Awaitable[T]]) -> T:
        breaker = self.breakers[model.name]
        if not breaker.allow():
            raise UpstreamUnavailable(
                f'The circuit for model "{model.name}" is open after repeated '
                "failures.",
                model=model.name,
            )
        deadline = time.monotonic() + model.timeouts.total
        tries = 0
        settled = False
        try:
            while True:
                try:
                    result = await attempt()
                except UnsendableRequest:
                    raise  # nothing reached the upstream (the probe is released)
                except Exception as exc:
                    err = exc if isinstance(exc, UpstreamError) else None
                    err = err or self._map(exc, model)
                    if is_client_fault(err):
                        breaker.record_success()
                        settled = True
                        raise err from None
                    breaker.record_failure()
                    delay = self._delay(err, tries)
                    tries += 1
                    if (
                        delay is None
                        or tries > model.max_retries
                        or time.monotonic() + delay >= deadline
                    ):
                        settled = True
                        raise err from None
                    log.warning(
                        "upstream %s failed (%s, status %s); retry %d in %.2fs",
                        model.name,
                        err.reason,
                        err.status,
                        tries,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                breaker.record_success()
                settled = True
                return result
        finally:
            if not settled:
                breaker.release_probe()

    def _delay(self, err: UpstreamError, tries: int) -> float | None:
        """Seconds to wait before the next attempt, or None for no retry."""
        if isinstance(err, UpstreamStatusError):
            if not err.retryable:
                return None
            if err.retry_after is not None:
                if err.retry_after > self.retry.retry_after_cap_s:
                    return None
                return err.retry_after
        elif not isinstance(err, UpstreamConnectError):
            return None
        ceiling = min(self.retry.max_delay_s, self.retry.base_delay_s * 2.0**tries)
        return ceiling * random.uniform(0.5, 1.0)

    @staticmethod
    def _map(exc: BaseException, model: ModelConfig) -> UpstreamError:
        """The one place aiohttp's exceptions become mixroute's."""
        name = model.name
        if isinstance(exc, UpstreamError):
            return exc
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamConnectError(
                f"Connecting to the upstream of {name} timed out.", model=name
            )
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(
                f"The upstream of {name} did not answer in time.", model=name
            )
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamProtocolError(
                f"The upstream of {name} broke off its answer.", model=name
            )
        if isinstance(
            exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError
        ):
            return UpstreamConnectError(
                f"The upstream of {name} cannot be reached.", model=name
            )
        if isinstance(exc, aiohttp.ClientConnectionError):
            return UpstreamConnectError(
                f"The connection to the upstream of {name} failed.", model=name
            )
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamProtocolError(
                f"The upstream of {name} sent an invalid answer.", model=name
            )
        return UpstreamProtocolError(
            f"The call to the upstream of {name} failed ({type(exc).__name__}).",
            model=name,
        )


def _salvage(content: aiohttp.StreamReader) -> bytes:
    # No public aiohttp API returns buffered bytes once an error is stored.
    buffer = getattr(content, "_buffer", None)
    if not buffer:
        return b""
    offset = getattr(content, "_buffer_offset", 0)
    data = b"".join(buffer)[offset:]
    buffer.clear()
    return bytes(data)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
