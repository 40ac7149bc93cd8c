"""A stream whose last event has no closing blank line: the events in that
tail reach the client as the line parser reads them (the whole-event fast path
left several lines in the buffer, which ``flush`` once read as one line)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from gateway_kit import build, make_config, serve

CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "up-small",
    "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}],
}
STOP = {**CHUNK, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
# Tails after the last blank line, with no blank line of their own: an extra
# newline, then [DONE]; [DONE] and one newline.
BODY = (
    f"data: {json.dumps(CHUNK)}\n\ndata: {json.dumps(STOP)}\n\n\ndata: [DONE]"
).encode()
BODY_DONE_ONLY = f"data: {json.dumps(CHUNK)}\n\ndata: [DONE]\n".encode()


@contextmanager
def raw_stream_upstream(body: bytes) -> Iterator[str]:
    """HTTP/1.1 on loopback: every request gets ``body`` as an event stream,
    then the connection closes (no length, no chunking)."""
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        size = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
        await r.readexactly(size)
        w.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"connection: close\r\n\r\n" + body
        )
        await w.drain()
        w.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(conn, sock=sock)

    server = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def _events(base: str) -> list[str]:
    with httpx.Client(timeout=5) as c:
        r = c.post(
            f"{base}/chat/completions",
            json={
                "model": "small",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
    assert r.status_code == 200
    return [ln[6:] for ln in r.text.split("\n") if ln.startswith("data: ")]


def test_stream_tail_without_blank_line_is_read_line_by_line() -> None:
    for body in (BODY, BODY_DONE_ONLY):
        with raw_stream_upstream(body) as url:
            app = build(*make_config({"small": url}))
            with serve(app) as s:
                events = _events(s.base_url)
        assert events[-1] == "[DONE]", events
        chunks = [json.loads(e) for e in events[:-1]]
        assert not any("error" in c for c in chunks), chunks
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == "Hello"
        if body is BODY:
            reasons = [c["choices"][0].get("finish_reason") for c in chunks]
            assert reasons[-1] == "stop", chunks
