"""One error tree for everything mixroute raises on purpose.

- ``ConfigError``: the configuration cannot be used; fatal at start-up.
- ``ClientError``: the request is wrong; becomes an OpenAI-shaped 4xx.
- ``UpstreamError``: a provider failed (timeout, connect, status, protocol, budget).
"""

from __future__ import annotations

from typing import Any


class MixrouteError(Exception):
    """Root of every error mixroute raises on purpose."""


class ConfigError(MixrouteError):
    """The configuration is invalid; ``problems`` holds one sentence per fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems) if problems else "invalid configuration")


class ClientError(MixrouteError):
    """A mistake in the client's request, reported in OpenAI's error shape."""

    status: int = 400
    type: str = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class UnsendableRequest(ClientError):
    """The request has no UTF-8 JSON form (e.g. a lone surrogate): a 400, never
    counted against an upstream and never retried on another model."""


class UpstreamError(MixrouteError):
    """A provider call failed. ``retryable`` says whether a retry may help."""

    reason: str = "upstream"
    retryable: bool = True

    def __init__(
        self, message: str, *, model: str = "", status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.model = model
        self.status = status


class UpstreamTimeout(UpstreamError):
    reason = "timeout"


class UpstreamConnectError(UpstreamError):
    reason = "connect"


class UpstreamStatusError(UpstreamError):
    reason = "status"

    def __init__(
        self,
        message: str,
        *,
        model: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message, model=model, status=status)
        self.retry_after = retry_after
        self.body = body
        self.retryable = status is not None and (status == 429 or status >= 500)


class UpstreamProtocolError(UpstreamError):
    reason = "protocol"


class UpstreamUnavailable(UpstreamError):
    """No endpoint is configured, or its circuit is open."""

    reason = "unavailable"
    retryable = False


class BudgetExceeded(UpstreamError):
    reason = "budget"
    retryable = False
