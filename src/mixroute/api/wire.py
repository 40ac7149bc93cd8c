"""Wire formats: request models, body reading, and OpenAI-shaped error replies."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)

from mixroute import wirejson
from mixroute.errors import ClientError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Number = Annotated[float, Field(strict=False)]
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    # Unknown fields are kept: OpenAI-compatible upstreams receive them as sent.
    model_config = ConfigDict(extra="allow")


class StreamOptions(_Open):
    include_usage: StrictBool | None = None


class ChatMessage(_Open):
    role: Role
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class _Common(_Open):
    model: str = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, ge=0, le=1)
    n: StrictInt | None = Field(None, ge=1, le=128)
    stop: str | list[str] | None = None
    user: str | None = None


class ChatRequest(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None


class CompletionRequest(_Common):
    """``POST /v1/completions`` (legacy)."""

    prompt: str | list[str] | list[int] | list[list[int]]


class ClassifyRequest(_Open):
    """``POST /v1/classify``: a prompt or a messages list."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


class ClientGone(Exception):
    """The client disconnected while the request body was being read."""


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower-case bytes)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


#: Where a layer in front (the guards) leaves ``(raw body, parsed JSON object or
#: None)`` after reading the body, so the endpoint neither reads nor parses it
#: again.
BODY_SCOPE_KEY = "mixroute.body"


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body; 413 as soon as it passes ``limit`` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> ClientError:
    return ClientError(
        f"The request body is larger than the limit max_body_bytes ({limit} bytes).",
        status=413,
        code="request_too_large",
    )


def parse_json(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 naming what is wrong."""
    fast = wirejson.loads_fast(body)
    if isinstance(fast, dict):
        return fast  # valid UTF-8, no lone surrogate: nothing left to check
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(
            f"The request body is not valid UTF-8 (bad byte at position {exc.start}).",
            code="invalid_encoding",
        ) from None
    data = loads_checked(text)
    if not isinstance(data, dict):
        raise ClientError(
            "The request body must be a JSON object.", code="invalid_json"
        )
    return data


# A "\uD800".."\uDFFF" escape; only then can a decoded string hold a surrogate
# (raw UTF-8 bytes cannot encode one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def loads_checked(text: str | bytes) -> Any:
    """``text`` decoded as JSON, or a 400: not JSON, nested too deeply, or with a
    lone surrogate escape (no UTF-8 form, so it could be sent nowhere)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise ClientError(
            "The request body is nested too deeply.", code="invalid_json"
        ) from None
    except ValueError as exc:
        raise ClientError(
            f"The request body is not valid JSON ({exc}).", code="invalid_json"
        ) from None
    if isinstance(text, str):
        escaped = _SURROGATE_ESCAPE.search(text) is not None
    else:
        escaped = _SURROGATE_ESCAPE_BYTES.search(text) is not None
    if escaped:
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (UnicodeEncodeError, RecursionError):
            raise ClientError(
                "The request body contains a lone UTF-16 surrogate escape "
                "(\\uD800-\\uDFFF without its pair), which is not valid Unicode.",
                code="invalid_encoding",
            ) from None
    return data


def validate(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """``model`` validated from ``data``, or a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise client_error_from(exc) from None


def client_error_from(exc: ValidationError) -> ClientError:
    err = exc.errors(include_url=False)[0]
    param = _param(err["loc"])
    if err["type"] == "missing":
        return ClientError(
            f"Missing required parameter: '{param}'.",
            code="missing_required_parameter",
            param=param,
        )
    if err["type"] == "too_short" and param in ("messages", "prompt"):
        return ClientError(
            f"'{param}' must contain at least one item.",
            code="empty_array",
            param=param,
        )
    return ClientError(
        f"Invalid value for '{param}': {err['msg']}.", code="invalid_value", param=param
    )


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not out:
            out = part
        elif part not in _TYPE_TAGS and "[" not in part and "-" not in part:
            # pydantic names union members (e.g. "str"); only real fields count.
            out += f".{part}"
    return out or "body"


async def send_json(
    send: Send,
    status: int,
    payload: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete JSON response."""
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def error_body(
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> bytes:
    """The JSON bytes of an OpenAI-shaped error."""
    return json.dumps(
        {"error": {"message": message, "type": type, "param": param, "code": code}}
    ).encode()
