"""Cached answers and streams: replay a completion as SSE, assemble one from chunks.

A cache hit on a streaming request is sent as the chunks OpenAI would have
streamed: per choice a role chunk, content pieces (or tool-call deltas), a
finish chunk; then, when the client asked for it with
``stream_options.include_usage``, a usage chunk with no choices; then
``data: [DONE]``. ``completion_from_chunks`` goes the other way, so an answer
that reached the client as a stream can be stored whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_PIECE_CHARS = 64  # characters of content per replayed chunk


def _sse(data: Mapping[str, Any]) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def replay_chunks(
    completion: Mapping[str, Any],
    *,
    include_usage: bool = False,
    piece_chars: int = _PIECE_CHARS,
) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that stream ``completion``."""
    base: dict[str, Any] = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    if "system_fingerprint" in completion:
        base["system_fingerprint"] = completion["system_fingerprint"]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> Any:
        choice = {"index": index, "delta": delta, "logprobs": None}
        return {**base, "choices": [{**choice, "finish_reason": finish}]}

    for position, choice in enumerate(completion.get("choices") or []):
        index = int(choice.get("index", position))
        message: Mapping[str, Any] = choice.get("message") or {}
        yield chunk(index, {"role": message.get("role", "assistant"), "content": ""})
        content = message.get("content")
        if isinstance(content, str):
            for piece in _pieces(content, max(1, piece_chars)):
                yield chunk(index, {"content": piece})
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]})
        for n, call in enumerate(message.get("tool_calls") or []):
            delta = {"index": n, **call}
            yield chunk(index, {"tool_calls": [delta]})
        if message.get("function_call"):
            yield chunk(index, {"function_call": message["function_call"]})
        yield chunk(index, {}, choice.get("finish_reason") or "stop")

    if include_usage and completion.get("usage") is not None:
        yield {**base, "choices": [], "usage": completion["usage"]}


def replay_sse(
    completion: Mapping[str, Any],
    *,
    include_usage: bool = False,
    piece_chars: int = _PIECE_CHARS,
) -> Iterator[bytes]:
    """``completion`` as the bytes of an SSE stream, ending with ``[DONE]``."""
    for chunk in replay_chunks(
        completion, include_usage=include_usage, piece_chars=piece_chars
    ):
        yield _sse(chunk)
    yield b"data: [DONE]\n\n"


def completion_from_chunks(chunks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Assemble streamed ``chat.completion.chunk`` objects into a completion.

    A choice that never received a finish reason keeps ``finish_reason:
    None``, which ``is_complete_answer`` rejects: a cut stream is not stored.
    """
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for chunk in chunks:
        if not head:
            head = {k: chunk.get(k) for k in ("id", "created", "model")}
            if "system_fingerprint" in chunk:
                head["system_fingerprint"] = chunk["system_fingerprint"]
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        for part in chunk.get("choices") or []:
            _merge_choice(choices, part)

    message_choices = []
    for index in sorted(choices):
        state = choices[index]
        message: dict[str, Any] = {
            "role": state["role"],
            "content": "".join(state["content"]) if state["content"] else None,
        }
        if state["refusal"]:
            message["refusal"] = "".join(state["refusal"])
        if state["tool_calls"]:
            message["tool_calls"] = [
                state["tool_calls"][n] for n in sorted(state["tool_calls"])
            ]
        message_choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": None,
                "finish_reason": state["finish_reason"],
            }
        )
    completion = {**head, "object": "chat.completion", "choices": message_choices}
    if usage is not None:
        completion["usage"] = usage
    return completion


def _merge_choice(choices: dict[int, dict[str, Any]], part: Mapping[str, Any]) -> None:
    index = int(part.get("index", 0))
    state = choices.setdefault(
        index,
        {
            "role": "assistant",
            "content": [],
            "refusal": [],
            "tool_calls": {},
            "finish_reason": None,
        },
    )
    delta: Mapping[str, Any] = part.get("delta") or {}
    if delta.get("role"):
        state["role"] = delta["role"]
    if delta.get("content"):
        state["content"].append(delta["content"])
    if delta.get("refusal"):
        state["refusal"].append(delta["refusal"])
    for call in delta.get("tool_calls") or []:
        n = int(call.get("index", 0))
        slot = state["tool_calls"].setdefault(
            n,
            {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if call.get("id"):
            slot["id"] = call["id"]
        if call.get("type"):
            slot["type"] = call["type"]
        function = call.get("function") or {}
        if function.get("name"):
            slot["function"]["name"] += function["name"]
        if function.get("arguments"):
            slot["function"]["arguments"] += function["arguments"]
    if part.get("finish_reason"):
        state["finish_reason"] = part["finish_reason"]
