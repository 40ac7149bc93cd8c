"""What a cached answer may be reused for: its scope, and the text inside it.

An answer is only reusable for a request that would produce it again, so the
scope holds everything that changes the answer: the tenant (API key id), the
resolved model, every request parameter except the few known not to matter
(streaming, tracking fields), and the whole conversation before the last
message, system prompt included. Within one scope, the last message is the
*text* matched exactly (after whitespace is normalised) or by embedding.

Unknown parameters are in the scope by default: a new OpenAI parameter can only
cause misses, never a wrong hit.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Request fields that never change the answer's content. Everything else,
# including fields this list does not know, is part of the scope.
NEUTRAL_PARAMS = frozenset(
    {
        "model",  # replaced by the resolved model
        "messages",  # split into context (scoped) and text (matched)
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "prompt_cache_key",
        "safety_identifier",
    }
)

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True)
class CacheScope:
    """The set of requests among which an answer may be reused.

    ``key`` is a digest of tenant, model and the scoped request content; it is
    the only form stored, so cache keys reveal neither tenant nor prompt.
    ``semantic`` says whether similar (not only identical) texts may match:
    only when the last message is plain user text, the thing the embedding
    describes. ``sampled`` is true when the request samples (temperature > 0,
    or unset, which OpenAI treats as 1).
    """

    tenant: str
    model: str
    key: str
    semantic: bool
    sampled: bool


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def normalise_text(text: str) -> str:
    """Collapse runs of whitespace and trim; case and punctuation are kept."""
    return " ".join(text.split())


def literals(text: str) -> str:
    """The numbers in ``text``, in order: similar prompts must agree on these.

    Embeddings barely separate "17 times 23" from "17 times 24" (cosine 0.91
    with the bundled encoder), so a similarity hit also needs equal numbers.
    """
    return " ".join(_NUMBER.findall(text))


def entry_key(scope: CacheScope, text: str) -> str:
    """The exact-match key of ``text`` within ``scope``."""
    return _digest(scope.key, normalise_text(text))


def _user_text(message: Mapping[str, Any]) -> str | None:
    """The message's text if it is a user turn made only of text, else None."""
    if message.get("role") != "user":
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                return None
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    return None


def _is_sampled(body: Mapping[str, Any]) -> bool:
    temperature = body.get("temperature")
    if temperature is None:
        return True
    try:
        return float(temperature) > 0
    except (TypeError, ValueError):
        return True


def chat_scope(
    tenant: str, model: str, body: Mapping[str, Any]
) -> tuple[CacheScope, str]:
    """The scope and matched text of a ``/v1/chat/completions`` request body.

    ``tenant`` is the API key's id (never the key itself); ``model`` the model
    the router resolved. Returns the scope and the text to look up: the last
    user message's text, or the last message as canonical JSON when it is not
    plain user text (then only exact matches are allowed).
    """
    messages: Sequence[Any] = body.get("messages") or []
    last: Any = messages[-1] if messages else {}
    text = _user_text(last) if isinstance(last, Mapping) else None
    params = {k: v for k, v in body.items() if k not in NEUTRAL_PARAMS}

    scoped = _digest(
        "chat/v1", tenant, model, _canonical(params), _canonical(list(messages[:-1]))
    )
    scope = CacheScope(
        tenant=tenant,
        model=model,
        key=scoped,
        semantic=text is not None,
        sampled=_is_sampled(body),
    )
    return scope, text if text is not None else _canonical(last)
