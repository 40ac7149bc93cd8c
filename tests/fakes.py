"""Fake upstreams and a stub classifier for tests: real servers on 127.0.0.1.

``FakeUpstream`` is a small HTTP/1.1 server on raw asyncio sockets, running on
its own thread and event loop, so sync and async clients can both use it. Each
request takes the next scripted ``Reply`` (or the default one) and records the
path, headers and JSON body it received. Raw sockets let a reply split a UTF-8
character across two network writes or drop the connection mid-body.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mixroute.classify.base import Classification

Kind = Literal[
    "answer",  # a whole JSON answer (or a stream when the request asks for one)
    "status",  # an error status with an OpenAI-shaped body
    "hang",  # say nothing until the client hangs up
    "drop",  # stream `chunks` content chunks, then cut the connection
    "drop_before",  # stream a role-only chunk, then cut the connection
    "split_utf8",  # stream text whose multi-byte characters straddle two writes
    "slow_first",  # wait `delay` s before the first content chunk of a stream
    "raw",  # `text` as the JSON body, sent as is with `status`
    "stall",  # stream one content chunk, then wait `delay` s for a hang-up
]


@dataclass(frozen=True)
class Reply:
    kind: Kind = "answer"
    text: str = ""
    chunks: int = 3
    status: int = 200
    retry_after: str | None = None
    error: Mapping[str, Any] | None = None
    delay: float = 0.0
    usage: tuple[int, int] = (11, 7)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class FakeUpstream:
    """An OpenAI-compatible stand-in answering as ``name``."""

    def __init__(self, name: str = "fake", default: Reply | None = None) -> None:
        self.name = name
        self.default = default or Reply()
        self.script: deque[Reply] = deque()
        self.received: list[Received] = []
        self.hangups: list[float] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    # life cycle -----------------------------------------------------------

    def start(self) -> FakeUpstream:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        """Script the next replies, in order; then the default applies."""
        self.script.extend(replies)

    # serving ----------------------------------------------------------------

    async def _conn(
        self, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                size = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(size) if size else b""
                body = json.loads(raw) if raw else {}
                self.received.append(Received(path, headers, body))
                reply = self.script.popleft() if self.script else self.default
                keep = await self._reply(reply, path, body, reader, w)
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            w.close()

    async def _reply(
        self,
        r: Reply,
        path: str,
        body: dict[str, Any],
        reader: asyncio.StreamReader,
        w: asyncio.StreamWriter,
    ) -> bool:
        if r.delay and r.kind not in ("slow_first", "stall"):
            await asyncio.sleep(r.delay)
        if r.kind == "hang":
            await reader.read()  # returns when the client closes the connection
            self.hangups.append(time.monotonic())
            return False
        if r.kind == "status":
            err = r.error or {
                "message": f"{self.name} failed with {r.status}",
                "type": "server_error" if r.status >= 500 else "invalid_request_error",
                "param": None,
                "code": None,
            }
            extra = {"retry-after": r.retry_after} if r.retry_after else {}
            self._json(w, r.status, {"error": err}, extra)
            await w.drain()
            return True
        if r.kind == "raw":
            data = r.text.encode()
            head = f"HTTP/1.1 {r.status} X\r\ncontent-type: application/json\r\n"
            w.write(f"{head}content-length: {len(data)}\r\n\r\n".encode() + data)
            await w.drain()
            return True
        text = r.text or f"Answer from {self.name}."
        if path.endswith("/messages"):
            return await self._anthropic(r, body, text, w)
        chat = path.endswith("/chat/completions")
        if not body.get("stream"):
            self._json(w, 200, _whole(self.name, body, text, chat, r.usage))
            await w.drain()
            return True
        return await self._stream(r, body, text, chat, reader, w)

    async def _stream(
        self,
        r: Reply,
        body: dict[str, Any],
        text: str,
        chat: bool,
        reader: asyncio.StreamReader,
        w: asyncio.StreamWriter,
    ) -> bool:
        w.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        model = str(body.get("model"))

        async def event(obj: Any) -> None:
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            payload = b"data: " + data + b"\n\n"
            w.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            await w.drain()

        if chat:
            await event(_chunk(model, {"role": "assistant", "content": ""}, chat))
        if r.kind == "drop_before":
            w.transport.abort()
            return False
        if r.kind == "slow_first":
            try:
                await asyncio.wait_for(reader.read(), r.delay)
                self.hangups.append(time.monotonic())
                return False
            except TimeoutError:
                pass
        if r.kind == "split_utf8":
            payload = (
                b"data: "
                + json.dumps(
                    _chunk(model, {"content": text}, chat), ensure_ascii=False
                ).encode()
                + b"\n\n"
            )
            # Cut inside the first multi-byte character and send two HTTP chunks.
            cut = next(i for i, b in enumerate(payload) if b >= 0x80) + 1
            for part in (payload[:cut], payload[cut:]):
                w.write(b"%x\r\n%s\r\n" % (len(part), part))
                await w.drain()
                await asyncio.sleep(0.05)
        else:
            pieces = _split(text, r.chunks)
            for i, piece in enumerate(pieces):
                if r.kind == "drop" and i + 1 >= r.chunks // 2 + 1:
                    # Content and the close leave together (one write, then FIN),
                    # so the client sees the bytes and the broken body at once.
                    data = json.dumps(_chunk(model, {"content": piece}, chat))
                    payload = b"data: " + data.encode() + b"\n\n"
                    w.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                    w.close()
                    return False
                await event(_chunk(model, {"content": piece}, chat))
                if r.kind == "stall":
                    try:
                        await asyncio.wait_for(reader.read(), r.delay)
                        self.hangups.append(time.monotonic())
                        return False
                    except TimeoutError:
                        pass
        await event(_chunk(model, {}, chat, finish="stop"))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            usage = _usage(r.usage)
            await event(
                {
                    "id": "cmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
        await event(b"[DONE]")
        w.write(b"0\r\n\r\n")
        await w.drain()
        return True

    async def _anthropic(
        self, r: Reply, body: dict[str, Any], text: str, w: asyncio.StreamWriter
    ) -> bool:
        """Anthropic Messages API answers, whole or as its named SSE events."""
        usage = {"input_tokens": r.usage[0], "output_tokens": r.usage[1]}
        if not body.get("stream"):
            self._json(
                w,
                200,
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model"),
                    "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": text}],
                    "usage": usage,
                },
            )
            await w.drain()
            return True
        w.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )

        async def event(name: str, data: dict[str, Any]) -> None:
            payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            w.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            await w.drain()

        start = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "usage": {"input_tokens": r.usage[0], "output_tokens": 0},
        }
        await event("message_start", {"type": "message_start", "message": start})
        await event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        )
        for piece in _split(text, r.chunks):
            await event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
            )
        await event("content_block_stop", {"type": "content_block_stop", "index": 0})
        await event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": r.usage[1]},
            },
        )
        await event("message_stop", {"type": "message_stop"})
        w.write(b"0\r\n\r\n")
        await w.drain()
        return True

    def _json(
        self,
        w: asyncio.StreamWriter,
        status: int,
        obj: Any,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        data = json.dumps(obj).encode()
        head = f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        head += f"content-length: {len(data)}\r\n"
        for k, v in (extra or {}).items():
            head += f"{k}: {v}\r\n"
        w.write(head.encode() + b"\r\n" + data)


def _usage(u: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": u[0], "completion_tokens": u[1], "total_tokens": sum(u)}


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text)))
    step = -(-len(text) // n)
    return [text[i : i + step] for i in range(0, len(text), step)]


def _chunk(
    model: str, delta: dict[str, Any], chat: bool, finish: str | None = None
) -> dict[str, Any]:
    if chat:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": delta.get("content", ""), "finish_reason": finish}
        kind = "text_completion"
    return {
        "id": "cmpl-fake",
        "object": kind,
        "created": 1,
        "model": model,
        "choices": [choice],
    }


def _whole(
    name: str, body: dict[str, Any], text: str, chat: bool, usage: tuple[int, int]
) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
        }
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        kind = "text_completion"
    return {
        "id": "cmpl-fake",
        "object": kind,
        "created": 1,
        "model": body.get("model"),
        "choices": [choice],
        "usage": _usage(usage),
    }


class StubClassifier:
    """A stand-in classifier for gateway tests, NOT the product's classifier.

    Routes by keyword: "integral"/"solve" → math (0.95), "python"/"code" →
    code (0.95), anything else → the first other route at confidence 0.5.
    """

    backend = "stub"

    def __init__(self, routes: Sequence[str] = ("math", "code", "chat")) -> None:
        self.routes = list(routes)
        self.calls = 0

    def classify(self, text: str) -> Classification:
        self.calls += 1
        low = text.lower()
        if "integral" in low or "solve" in low:
            route, conf = "math", 0.95
        elif "python" in low or "code" in low:
            route, conf = "code", 0.95
        else:
            route, conf = self.routes[-1], 0.5
        scores = {r: (conf if r == route else 0.0) for r in self.routes}
        return Classification(route, conf, "simple", scores, 0.2, "stub", 0.01)

    def classify_messages(
        self, messages: Sequence[Mapping[str, object]]
    ) -> Classification:
        for m in reversed(messages):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                return self.classify(str(m["content"]))
        return self.classify("")

    def lookup_messages(
        self, messages: Sequence[Mapping[str, object]]
    ) -> Classification | None:
        return None  # no cache: every request is classified (and counted)

    def embed(self, texts: Sequence[str]) -> object:
        return [[0.0] for _ in texts]
