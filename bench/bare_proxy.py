"""A bare aiohttp pass-through proxy: the yardstick for mixroute's overhead.

It does what any proxy must (read the body, forward it on a pooled keep-alive
session, relay the answer or the stream) and nothing else: no validation,
routing, retries or accounting. Run: ``python -m bench.bare_proxy PORT UPSTREAM``.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web

_SESSION = web.AppKey("session", aiohttp.ClientSession)
_UPSTREAM = web.AppKey("upstream", str)


async def forward(request: web.Request) -> web.StreamResponse:
    session = request.app[_SESSION]
    body = await request.read()
    url = request.app[_UPSTREAM] + request.path
    async with session.post(
        url, data=body, headers={"content-type": "application/json"}
    ) as upstream:
        kind = upstream.headers.get("content-type", "application/json")
        if not kind.startswith("text/event-stream"):
            data = await upstream.read()
            return web.Response(
                body=data, status=upstream.status, headers={"content-type": kind}
            )
        out = web.StreamResponse(
            status=upstream.status,
            headers={"content-type": kind, "cache-control": "no-cache"},
        )
        await out.prepare(request)
        async for chunk in upstream.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
        return out


async def _session(app: web.Application) -> object:
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=30)
    app[_SESSION] = aiohttp.ClientSession(connector=connector)
    yield
    await app[_SESSION].close()


def make_app(upstream: str) -> web.Application:
    """The proxy app forwarding every POST to ``upstream`` + path."""
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app[_UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(_session)
    app.router.add_post("/{tail:.*}", forward)
    return app


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(
        make_app(upstream),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
