"""Conversation stickiness: a conversation stays on its first-turn model.

A conversation is named by ``x-session-id``, or else by the OpenAI ``user``
field plus the conversation hash (system prompt + first user turn, which every
later turn repeats). The pin key always includes the API key id, so two keys
never share a pin. The pin is written after the first successful turn and its
TTL restarts with every successful turn on it.

When the pinned model fails, the pin moves once, to the model that answered
instead (or, if none did, the next candidate after it) and stays there: it is
never moved back.
"""

from __future__ import annotations

from collections.abc import Sequence

from mixroute.config.policies import SessionsConfig
from mixroute.policy.request import Outcome, PolicyRequest
from mixroute.policy.store import PolicyStore


def session_key(req: PolicyRequest) -> str | None:
    """The store key of the request's conversation pin, or None when the
    request carries neither a session id nor a user with a conversation."""
    scope = req.key_id or "-"
    if req.session_id:
        return f"pin:{scope}:s:{req.session_id}"
    if req.user and req.conversation:
        return f"pin:{scope}:u:{req.user}:{req.conversation}"
    return None


class SessionPins:
    """Reads and moves conversation pins in the store."""

    def __init__(self, config: SessionsConfig, store: PolicyStore) -> None:
        self.config = config
        self.store = store

    async def pinned(self, key: str) -> str | None:
        """The model the conversation is pinned to, if any."""
        return await self.store.get(key)

    async def record(
        self, key: str, outcome: Outcome, candidates: Sequence[str]
    ) -> str | None:
        """Update the pin after a turn; returns the pinned model afterwards."""
        ttl = self.config.ttl_s
        pin = await self.store.get(key)
        if pin is None:
            if outcome.ok and outcome.model is not None:
                await self.store.set_if_absent(key, outcome.model, ttl)
                return await self.store.get(key)
            return None
        if pin in outcome.failed or (not outcome.ok and outcome.model == pin):
            moved = outcome.model if outcome.ok else _next_after(pin, candidates)
            if moved is not None and moved != pin:
                await self.store.set(key, moved, ttl)
                return moved
        if outcome.ok and outcome.model == pin:
            await self.store.set(key, pin, ttl)
        return pin


def _next_after(model: str, candidates: Sequence[str]) -> str | None:
    names = list(candidates)
    if model in names:
        i = names.index(model)
        return names[i + 1] if i + 1 < len(names) else None
    return names[0] if names else None
