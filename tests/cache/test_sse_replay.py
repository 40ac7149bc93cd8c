"""A cached completion replayed as SSE, read back by the real openai SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from aiohttp import web

from mixroute.cache import completion_from_chunks, is_complete_answer, replay_sse

TEXT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-cached",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "small-model",
    "system_fingerprint": "fp_1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Paris is the capital of France. " * 5 + "Ünïcødé ✓ 🚀",
            },
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "Paris."},
            "logprobs": None,
            "finish_reason": "length",
        },
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52},
}

TOOL_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-tool",
    "object": "chat.completion",
    "created": 1_700_000_001,
    "model": "small-model",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris"}',
                        },
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
}


@pytest.fixture
async def sse_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A loopback server that answers with ``state['answer']`` replayed as SSE."""
    state: dict[str, Any] = {}

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in replay_sse(
            state["answer"], include_usage=include_usage, piece_chars=16
        ):
            await response.write(event)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1", state
    await runner.cleanup()


async def _stream(base_url: str, include_usage: bool) -> list[dict[str, Any]]:
    client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": include_usage},
        )
        return [chunk.model_dump(exclude_none=True) async for chunk in stream]
    finally:
        await client.close()


async def test_text_answer_replays_through_the_openai_sdk(
    sse_server: tuple[str, dict[str, Any]],
) -> None:
    base_url, state = sse_server
    state["answer"] = TEXT_ANSWER
    chunks = await _stream(base_url, include_usage=True)

    assert all(c["id"] == "chatcmpl-cached" for c in chunks)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 52
    assert len(chunks) > 6  # the content was sent in several pieces

    rebuilt = completion_from_chunks(chunks)
    for got, want in zip(rebuilt["choices"], TEXT_ANSWER["choices"], strict=True):
        assert got["message"]["content"] == want["message"]["content"]
        assert got["finish_reason"] == want["finish_reason"]
    assert rebuilt["usage"] == TEXT_ANSWER["usage"]
    assert is_complete_answer(rebuilt)


async def test_usage_chunk_only_when_asked(
    sse_server: tuple[str, dict[str, Any]],
) -> None:
    base_url, state = sse_server
    state["answer"] = TEXT_ANSWER
    chunks = await _stream(base_url, include_usage=False)
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


async def test_tool_calls_replay_through_the_openai_sdk(
    sse_server: tuple[str, dict[str, Any]],
) -> None:
    base_url, state = sse_server
    state["answer"] = TOOL_ANSWER
    chunks = await _stream(base_url, include_usage=True)

    rebuilt = completion_from_chunks(chunks)
    message = rebuilt["choices"][0]["message"]
    assert rebuilt["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    assert message["tool_calls"] == TOOL_ANSWER["choices"][0]["message"]["tool_calls"]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris"
    }


def test_replay_ends_with_done_and_every_event_is_json() -> None:
    events = b"".join(replay_sse(TEXT_ANSWER)).decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    for event in events[:-2]:
        assert event.startswith("data: ")
        json.loads(event.removeprefix("data: "))


def test_a_cut_stream_assembles_to_an_incomplete_answer() -> None:
    chunks = list(
        json.loads(e.removeprefix(b"data: "))
        for e in replay_sse(TEXT_ANSWER)
        if e != b"data: [DONE]\n\n"
    )
    cut = [c for c in chunks if not any(ch["finish_reason"] for ch in c["choices"])]
    assert not is_complete_answer(completion_from_chunks(cut))
    assert is_complete_answer(completion_from_chunks(chunks))
