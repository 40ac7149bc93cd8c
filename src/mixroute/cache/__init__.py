"""The semantic response cache: exact match, then embedding similarity, per scope.

Typical use on the request path::

    scope, text = cache.chat_scope(key_id, decision.model, body)
    hit = await cache.lookup(scope, text, embedding, route=classification.route)
    if hit is None:
        ...  # call the upstream
        await cache.store(scope, text, embedding, completion, complete=True)

For a streaming request, a hit is sent with ``replay_sse(hit.response, ...)``
and a streamed answer is stored via ``completion_from_chunks``.
"""

from mixroute.cache.base import CachedAnswer
from mixroute.cache.factory import build_response_cache
from mixroute.cache.response import ResponseCache, is_complete_answer
from mixroute.cache.scope import CacheScope, chat_scope
from mixroute.cache.sse import completion_from_chunks, replay_chunks, replay_sse

__all__ = [
    "CacheScope",
    "CachedAnswer",
    "ResponseCache",
    "build_response_cache",
    "chat_scope",
    "completion_from_chunks",
    "is_complete_answer",
    "replay_chunks",
    "replay_sse",
]
