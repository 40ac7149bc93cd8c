"""A stand-in OpenAI-compatible upstream for the docker-compose example.

Answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` with a fixed
text (as JSON, or as SSE when the request streams) after ``--delay`` seconds,
so the gateway can be tried without provider keys. Standard library only.

    python stand_in_upstream.py --host 127.0.0.1 --port 9000 --name small
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _usage(prompt: str, text: str) -> dict[str, int]:
    p, c = max(1, len(prompt) // 4), max(1, len(text) // 4)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class Handler(BaseHTTPRequestHandler):
    name = "stand-in"
    delay = 0.05
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/healthz", "/v1/models"):
            self._json(200, {"object": "list", "data": [{"id": self.name}]})
        else:
            self._json(404, {"error": {"message": "not found", "type": "invalid"}})

    def do_POST(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        try:
            body: dict[str, Any] = json.loads(self.rfile.read(size) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "bad JSON", "type": "invalid"}})
            return
        chat = self.path.endswith("/chat/completions")
        if not chat and not self.path.endswith("/completions"):
            self._json(404, {"error": {"message": "not found", "type": "invalid"}})
            return
        prompt = json.dumps(body.get("messages") or body.get("prompt") or "")
        text = f"This is {self.name} answering."
        time.sleep(self.delay)
        model = str(body.get("model") or self.name)
        if body.get("stream"):
            self._stream(model, text, chat, prompt, body)
            return
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        self._json(
            200,
            {
                "id": "cmpl-stand-in",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [choice],
                "usage": _usage(prompt, text),
            },
        )

    def _stream(
        self, model: str, text: str, chat: bool, prompt: str, body: dict[str, Any]
    ) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(data: str) -> None:
            payload = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            self.wfile.flush()

        def chunk(piece: str | None, finish: str | None) -> str:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if chat:
                choice["delta"] = {} if piece is None else {"content": piece}
            else:
                choice["text"] = piece or ""
            return json.dumps(
                {"id": "cmpl-stand-in", "object": kind, "model": model,
                 "created": int(time.time()), "choices": [choice]}
            )  # fmt: skip

        for word in text.split(" "):
            event(chunk(word + " ", None))
        event(chunk(None, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"id": "cmpl-stand-in", "object": kind, "model": model,
                     "choices": [], "usage": _usage(prompt, text)}  # fmt: skip
            event(json.dumps(usage))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the gateway logs every request already


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--name", default="stand-in")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds")
    args = parser.parse_args()
    Handler.name, Handler.delay = args.name, args.delay
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"stand-in upstream {args.name} on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
