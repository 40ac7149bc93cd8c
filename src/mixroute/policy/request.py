"""What the engine is told about a request before it decides, and after."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from mixroute.tokens import MESSAGE_OVERHEAD, count_message_tokens, message_text


@dataclass(frozen=True)
class Needs:
    """Capabilities a request requires of the model that serves it."""

    vision: bool = False
    tools: bool = False
    json: bool = False


@dataclass(frozen=True)
class PolicyRequest:
    """One request as the policy layer sees it.

    ``model`` is what the client asked for: ``auto``, ``auto:<route>`` or a
    concrete model name. ``key_id`` is the API key's id (never the key),
    ``user`` the OpenAI ``user`` field. ``conversation`` identifies a
    conversation across turns (see ``conversation_hash``). ``max_tokens`` is
    None when the client set none (the model's ``max_output_tokens`` then
    bounds the worst case). ``text`` is the prompt text for difficulty scoring
    and feedback; ``messages`` the chat messages for context trimming.
    """

    model: str = "auto"
    request_id: str = ""
    key_id: str | None = None
    user: str | None = None
    session_id: str | None = None
    needs: Needs = field(default_factory=Needs)
    prompt_tokens: int = 0
    #: False when ``prompt_tokens`` is ``from_body``'s upper bound (characters
    #: plus framing, never fewer than the tokenizer's count); ``exact()`` counts.
    prompt_tokens_exact: bool = True
    max_tokens: int | None = None
    text: str = ""
    messages: tuple[Mapping[str, Any], ...] = ()
    now: datetime | None = None

    @property
    def principal(self) -> str | None:
        """Who the user is for stickiness and preferences: ``user`` within the
        key when given, else the key."""
        if self.user:
            return f"{self.key_id or '-'}/{self.user}"
        return self.key_id

    @functools.cached_property
    def conversation(self) -> str | None:
        """The conversation's id (``conversation_hash``), computed on first use:
        only session pins keyed by ``user`` need it, so most requests never
        hash their messages."""
        return conversation_hash(self.messages)

    def exact(self) -> PolicyRequest:
        """This request with ``prompt_tokens`` counted by the tokenizer
        (CPU-bound for long prompts: call it off the event loop then)."""
        if self.prompt_tokens_exact:
            return self
        tokens = count_message_tokens(self.messages)
        return replace(self, prompt_tokens=tokens, prompt_tokens_exact=True)

    @classmethod
    def from_body(
        cls,
        body: Mapping[str, Any],
        *,
        request_id: str = "",
        key_id: str | None = None,
        session_id: str | None = None,
        now: datetime | None = None,
    ) -> PolicyRequest:
        """Build from an OpenAI chat-completions body (needs read from content
        parts, ``tools`` and ``response_format``). ``prompt_tokens`` is a cheap
        upper bound here; the engine counts exactly only when it matters."""
        messages = tuple(
            m for m in body.get("messages") or () if isinstance(m, Mapping)
        )
        rf = body.get("response_format")
        rf_type = rf.get("type") if isinstance(rf, Mapping) else None
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        user = body.get("user")
        return cls(
            model=str(body.get("model") or "auto"),
            request_id=request_id,
            key_id=key_id,
            user=user if isinstance(user, str) and user else None,
            session_id=session_id,
            needs=Needs(
                vision=_has_images(messages),
                tools=bool(body.get("tools") or body.get("functions")),
                json=rf_type in ("json_object", "json_schema"),
            ),
            prompt_tokens=_token_bound(messages),
            prompt_tokens_exact=False,
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            text=_last_user_text(messages),
            messages=messages,
            now=now,
        )


@dataclass(frozen=True)
class Outcome:
    """What happened to a decided request. ``model`` answered it (None if
    none did); ``failed`` lists models that failed first, in order. Times in
    ms, cost in USD; ``status`` is the HTTP status returned to the client."""

    status: int
    model: str | None = None
    failed: tuple[str, ...] = ()
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cost_usd: float = 0.0

    @property
    def ok(self) -> bool:
        """The client got an answer."""
        return self.status < 400 and self.model is not None

    @property
    def upstream_ok(self) -> bool:
        """The answering model did its part (a 4xx is the client's fault)."""
        return self.status < 500 and self.model is not None


def _token_bound(messages: Sequence[Mapping[str, Any]]) -> int:
    # A WordPiece token covers at least one character, so characters plus the
    # framing bound the count from above at the cost of a len() per message.
    total = 0
    for m in messages:
        total += MESSAGE_OVERHEAD + len(message_text(m.get("content")))
        for call in m.get("tool_calls") or []:
            fn = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(fn, Mapping):
                total += len(str(fn.get("arguments", "")))
    return total


def conversation_hash(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """A stable id for a conversation: the hash of its system prompt and first
    user turn, which every later turn repeats. None without a user turn."""
    system = [
        message_text(m.get("content")) for m in messages if m.get("role") == "system"
    ]
    first_user = next(
        (message_text(m.get("content")) for m in messages if m.get("role") == "user"),
        None,
    )
    if first_user is None:
        return None
    raw = json.dumps([system[:1], first_user], ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _has_images(messages: Sequence[Mapping[str, Any]]) -> bool:
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and part.get("type") in (
                    "image_url",
                    "input_image",
                    "image",
                ):
                    return True
    return False


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return message_text(m.get("content"))
    return ""
