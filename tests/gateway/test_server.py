"""End to end: the real server on a free port, the real ``openai`` SDK, streams."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest
from gateway_kit import build, make_config, serve, wait_rows

from fakes import Reply

MSG = [{"role": "user", "content": "hello"}]


def sse_lines(r: httpx.Response) -> list[str]:
    return [line for line in r.iter_lines() if line]


def test_sync_sdk_non_streaming(upstreams, urls) -> None:
    with serve(build(*make_config(urls))) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="client", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "solve x+1=2"}]
        )
        answer = raw.parse()
    assert answer.choices[0].message.content == "Answer from medium."
    assert answer.usage is not None and answer.usage.prompt_tokens == 11
    assert raw.headers["x-mixroute-route"] == "math"


def test_sync_sdk_streaming_with_and_without_usage(upstreams, urls) -> None:
    upstreams["small"].default = Reply(text="one two three four", chunks=4)
    with serve(build(*make_config(urls))) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="client", max_retries=0)
        plain = list(
            client.chat.completions.create(model="small", messages=MSG, stream=True)
        )
        with_usage = list(
            client.chat.completions.create(
                model="small",
                messages=MSG,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        rows = wait_rows(s.app, 2)
    text = "".join(c.choices[0].delta.content or "" for c in plain if c.choices)
    assert text == "one two three four"
    assert all(getattr(c, "usage", None) is None for c in plain)
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 7
    # Streams ask upstream for usage and are priced like whole answers.
    assert upstreams["small"].received[0].body["stream_options"] == {
        "include_usage": True
    }
    assert [r["output_tokens"] for r in rows] == [7, 7]
    assert all(r["stream"] == 1 and r["ttft_ms"] is not None for r in rows)


async def test_async_sdk_streaming_and_whole(upstreams, urls) -> None:
    with serve(build(*make_config(urls))) as s:
        client = openai.AsyncOpenAI(base_url=s.base_url, api_key="k", max_retries=0)
        whole = await client.chat.completions.create(model="auto:chat", messages=MSG)
        stream = await client.chat.completions.create(
            model="auto:chat", messages=MSG, stream=True
        )
        parts = [c.choices[0].delta.content async for c in stream if c.choices]
        await client.close()
    assert whole.choices[0].message.content == "Answer from small."
    assert "".join(p or "" for p in parts) == "Answer from small."


def test_stream_falls_back_silently_before_first_content(upstreams, urls) -> None:
    upstreams["small"].push(Reply("drop_before"))
    upstreams["small"].default = Reply("status", status=500)
    with serve(build(*make_config(urls))) as s:
        with httpx.stream(
            "POST",
            f"{s.base_url}/chat/completions",
            json={"model": "small", "messages": MSG, "stream": True},
        ) as r:
            lines = sse_lines(r)
            headers = r.headers
    assert r.status_code == 200
    assert headers["x-mixroute-model"] == "medium"
    assert headers["x-mixroute-fallbacks"] == "1"
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Answer from medium."
    # One role chunk only: the dropped stream's held-back chunk never went out.
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("role")) == 1


def test_stream_5xx_before_first_byte_falls_back(upstreams, urls) -> None:
    upstreams["small"].default = Reply("status", status=500)
    with serve(build(*make_config(urls))) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="k", max_retries=0)
        chunks = list(
            client.chat.completions.create(model="small", messages=MSG, stream=True)
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Answer from medium."


def test_drop_after_content_ends_with_one_error_event(upstreams, urls) -> None:
    upstreams["small"].push(Reply("drop", text="abcdefgh", chunks=4))
    with serve(build(*make_config(urls))) as s:
        with httpx.stream(
            "POST",
            f"{s.base_url}/chat/completions",
            json={"model": "small", "messages": MSG, "stream": True},
            headers={"x-request-id": "drop-1"},
        ) as r:
            lines = sse_lines(r)
        rows = wait_rows(s.app, 1)
    events = [json.loads(line[6:]) for line in lines]
    assert "data: [DONE]" not in lines
    assert "error" in events[-1] and len([e for e in events if "error" in e]) == 1
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    # Content sent before the drop is handed on; nothing from another model.
    assert text == "abcdef"
    assert not upstreams["medium"].received
    assert rows[0]["status"] == 502 and rows[0]["models_tried"] == "small"


def test_multibyte_character_split_across_writes(upstreams, urls) -> None:
    upstreams["small"].push(Reply("split_utf8", text="héllo wörld €✓ 日本"))
    with serve(build(*make_config(urls))) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key="k", max_retries=0)
        chunks = list(
            client.chat.completions.create(model="small", messages=MSG, stream=True)
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "héllo wörld €✓ 日本"


@pytest.mark.parametrize("stream", [True, False])
def test_client_hangup_cancels_upstream_while_waiting(upstreams, urls, stream) -> None:
    upstreams["small"].push(Reply("slow_first", delay=10) if stream else Reply("hang"))
    with serve(build(*make_config(urls))) as s:
        body: dict[str, Any] = {"model": "small", "messages": MSG, "stream": stream}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{s.base_url}/chat/completions",
                json=body,
                headers={"x-request-id": "gone-1"},
                timeout=httpx.Timeout(5, read=0.3),
            )
        hung_up = time.monotonic()
        for _ in range(300):
            if upstreams["small"].hangups:
                break
            time.sleep(0.01)
        rows = wait_rows(s.app, 1)
    assert upstreams["small"].hangups, "the upstream request was not cancelled"
    assert upstreams["small"].hangups[0] - hung_up < 2.0
    assert [(r["request_id"], r["status"]) for r in rows] == [("gone-1", 499)]


def test_client_hangup_mid_stream_records_partial_usage(upstreams, urls) -> None:
    upstreams["small"].push(Reply("stall", text="x" * 40, chunks=2, delay=10))
    with serve(build(*make_config(urls))) as s:
        body = {"model": "small", "messages": MSG, "stream": True}
        with httpx.stream(
            "POST",
            f"{s.base_url}/chat/completions",
            json=body,
            headers={"x-request-id": "part-1"},
        ) as r:
            first = next(line for line in r.iter_lines() if "xxxx" in line)
            hung_up = time.monotonic()
        for _ in range(300):
            if upstreams["small"].hangups:
                break
            time.sleep(0.01)
        rows = wait_rows(s.app, 1)
    assert "x" * 20 in first
    assert upstreams["small"].hangups[0] - hung_up < 2.0
    row = rows[0]
    assert (row["request_id"], row["status"], row["model"]) == ("part-1", 499, "small")
    assert row["output_tokens"] > 0 and row["input_tokens"] > 0
    assert row["cost_usd"] > 0
