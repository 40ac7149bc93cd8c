"""A fast fake OpenAI upstream for benchmarks: canned answers from raw asyncio.

``python -m bench.fast_upstream PORT`` serves ``POST .../chat/completions``
with a fixed JSON answer, or a fixed 16-chunk SSE stream (with usage) when the
body asks for ``"stream": true``. It parses only what it must, so the
benchmark measures the proxies, not the upstream.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

STREAM_CHUNKS = 16


def _responses() -> tuple[bytes, bytes]:
    usage = {"prompt_tokens": 20, "completion_tokens": STREAM_CHUNKS}
    whole = json.dumps(
        {
            "id": "b",
            "object": "chat.completion",
            "created": 1,
            "model": "up",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello " * 16},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        },
        separators=(",", ":"),
    ).encode()
    json_reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(whole), whole)
    )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "b",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": "Hello "}) for _ in range(STREAM_CHUNKS)]
    events.append(chunk({}, "stop"))
    events.append(
        {"id": "b", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    )
    body = b""
    for e in [*events, "[DONE]"]:
        data = e if isinstance(e, str) else json.dumps(e, separators=(",", ":"))
        payload = b"data: " + data.encode() + b"\n\n"
        body += b"%x\r\n%s\r\n" % (len(payload), payload)
    stream_reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"
    )
    return json_reply, stream_reply


class _Upstream(asyncio.Protocol):
    JSON, STREAM = _responses()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            size = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            stream = b'"stream":true' in body.replace(b" ", b"")
            self.transport.write(self.STREAM if stream else self.JSON)


def serve_upstream(port: int) -> None:
    """Serve the fake upstream on ``port`` until killed."""
    _use_uvloop()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(_Upstream, "127.0.0.1", port, backlog=1024)
    )
    try:
        loop.run_forever()
    finally:
        server.close()


def _use_uvloop() -> None:
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass


if __name__ == "__main__":
    serve_upstream(int(sys.argv[1]))
