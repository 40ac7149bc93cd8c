"""Request shape limits: body size, messages, message length, tools, ``n``,
``max_tokens``. Each violation is a ``ClientError`` naming the limit."""

from __future__ import annotations

from typing import Any

from mixroute.config.schema import LimitsConfig
from mixroute.errors import ClientError

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def check_body_size(
    size: int, limits: LimitsConfig, default: int | None = None
) -> None:
    """Raise a 413 ``ClientError`` when a body of ``size`` bytes is over the limit.

    ``default`` is the server-wide size (``server.max_body_bytes``), used when
    ``limits.max_body_bytes`` is not set.
    """
    limit = limits.max_body_bytes or default or DEFAULT_MAX_BODY_BYTES
    if size > limit:
        raise ClientError(
            f"The request body is {size} bytes; the limit max_body_bytes is "
            f"{limit} bytes.",
            status=413,
            code="request_too_large",
        )


def _text_length(content: Any) -> int:
    """Characters of text in a message's content (a string or a list of parts)."""
    if isinstance(content, str):
        return len(content)
    total = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += len(part["text"])
            elif isinstance(part, str):
                total += len(part)
    return total


def _int_param(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    # bool is an int in Python; a JSON true is not a count. Wrong types are the
    # request validator's to report, with its own wording.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def check_limits(body: dict[str, Any], limits: LimitsConfig) -> None:
    """Raise a 400 ``ClientError`` naming the first limit ``body`` breaks.

    Checks the number of messages, the characters in each message (and in a
    completions ``prompt``), the number of tools, ``n`` and ``max_tokens`` (or
    ``max_completion_tokens``) against the configured limits. Wrong types and
    values no request may have (``n: 0``) are left to the request validator.
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        if len(messages) > limits.max_messages:
            raise ClientError(
                f"The request has {len(messages)} messages; the limit max_messages "
                f"is {limits.max_messages}.",
                param="messages",
                code="too_many_messages",
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            length = _text_length(message.get("content"))
            if length > limits.max_message_chars:
                raise ClientError(
                    f"messages[{i}] has {length} characters; the limit "
                    f"max_message_chars is {limits.max_message_chars}.",
                    param=f"messages[{i}].content",
                    code="message_too_long",
                )

    prompt = body.get("prompt")
    prompts = prompt if isinstance(prompt, list) else [prompt]
    for p in prompts:
        if isinstance(p, str) and len(p) > limits.max_message_chars:
            raise ClientError(
                f"The prompt has {len(p)} characters; the limit max_message_chars "
                f"is {limits.max_message_chars}.",
                param="prompt",
                code="message_too_long",
            )

    tools = body.get("tools")
    if isinstance(tools, list) and len(tools) > limits.max_tools:
        raise ClientError(
            f"The request has {len(tools)} tools; the limit max_tools is "
            f"{limits.max_tools}.",
            param="tools",
            code="too_many_tools",
        )

    n = _int_param(body, "n")
    if n is not None and n > limits.max_n:
        raise ClientError(
            f"n is {n}; the limit max_n is {limits.max_n}.",
            param="n",
            code="invalid_n",
        )

    for name in ("max_tokens", "max_completion_tokens"):
        value = _int_param(body, name)
        if value is None:
            continue
        if limits.max_tokens is not None and value > limits.max_tokens:
            raise ClientError(
                f"{name} is {value}; the limit max_tokens is {limits.max_tokens}.",
                param=name,
                code="max_tokens_too_large",
            )
