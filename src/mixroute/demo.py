"""``make demo``: the whole path on a machine with no model at all.

Three stand-in upstreams start on loopback, one per model tier of the embedded
default config. They are not models: each answer says which stand-in answered
and repeats the start of the prompt. The "small" stand-in fails part of the
time (the same prompts every run), so fallbacks show. mixroute runs in front
of them as a real server on a free port, and a few hundred real prompts
(``demo_data/prompts.jsonl``, see ``demo_data/NOTICE``) go through it with the
``openai`` SDK, some streamed. The report: traffic split by route and model,
fallbacks, routing agreement with the prompts' labels, and cost against
sending everything to the premium model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

STAND_INS = {
    "small": "stand-in-small",
    "medium": "stand-in-medium",
    "large": "stand-in-large",
}
FAIL_SHARE = 0.2  # of prompts the small stand-in refuses with a 503
CONCURRENCY = 8
STREAM_EVERY = 3  # every third request streams


# -- stand-in upstreams --------------------------------------------------------


def _fails(name: str, prompt: str) -> bool:
    if name != "small":
        return False
    digest = hashlib.sha256(prompt.encode()).digest()
    return digest[0] < 256 * FAIL_SHARE


def _answer(name: str, prompt: str) -> str:
    head = " ".join(prompt.split())[:80]
    return (
        f"[{STAND_INS[name]}] This is the demo stand-in for the {name!r} model, "
        f"not a real model. Your prompt began: {head!r}"
    )


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def stand_in_app(name: str) -> web.Application:
    """An OpenAI-compatible stand-in that answers as ``name``."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body.get("messages") or []
        prompt = str(messages[-1].get("content", "")) if messages else ""
        if _fails(name, prompt):
            return web.json_response(
                {
                    "error": {
                        "message": f"{STAND_INS[name]} is overloaded (demo)",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
                status=503,
            )
        text = _answer(name, prompt)
        usage = {
            "prompt_tokens": _tokens(json.dumps(messages)),
            "completion_tokens": _tokens(text),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = body.get("model", name)
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "demo",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "usage": usage,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                }
            )
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any], finish: str | None = None) -> None:
            chunk = {
                "id": "demo",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        words = text.split(" ")
        for i in range(0, len(words), 6):
            await send({"content": " ".join(words[i : i + 6]) + " "})
        await send({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {
                "id": "demo",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await resp.write(b"data: " + json.dumps(tail).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


# -- the demo ------------------------------------------------------------------


@dataclass
class Result:
    category: str
    route: str
    model: str
    fallbacks: int
    streamed: bool
    status: int
    says_model: bool


def load_prompts() -> list[dict[str, Any]]:
    """The demo prompts shipped with mixroute."""
    text = (resources.files("mixroute") / "demo_data" / "prompts.jsonl").read_text(
        "utf-8"
    )
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _start_stand_ins() -> tuple[list[web.AppRunner], dict[str, str]]:
    runners, urls = [], {}
    for name in STAND_INS:
        runner = web.AppRunner(stand_in_app(name), access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls[name] = f"http://127.0.0.1:{port}/v1"
    return runners, urls


def _start_gateway(ledger: Path) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    from mixroute.api.app import create_app
    from mixroute.config import load_config

    config = load_config()
    server_cfg = config.server.model_copy(update={"ledger_path": str(ledger)})
    # The demo is local and self-contained: no client keys, and no key store,
    # feedback or other files picked up from the folder it is run in.
    auth_cfg = config.auth.model_copy(
        update={"mode": "off", "keys_path": str(ledger.parent / "keys.sqlite")}
    )
    config = config.model_copy(update={"server": server_cfg, "auth": auth_cfg})
    app = create_app(config)
    # The summary reports the retries and fallbacks; their WARNING lines would
    # only interleave with the progress output.
    logging.getLogger("mixroute").setLevel(logging.ERROR)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, name="mixroute-demo", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the gateway did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}/v1"


async def _send_all(base_url: str, prompts: list[dict[str, Any]]) -> list[Result]:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="demo", max_retries=0, timeout=60
    )
    gate = asyncio.Semaphore(CONCURRENCY)
    results: list[Result] = []

    async def one(i: int, row: dict[str, Any]) -> None:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": row["prompt"]}
        ]
        streamed = i % STREAM_EVERY == 0
        async with gate:
            try:
                if streamed:
                    async with client.chat.completions.with_streaming_response.create(
                        model="auto", messages=messages, stream=True
                    ) as resp:
                        headers = resp.headers
                        text = ""
                        chunks = await resp.parse()
                        assert isinstance(chunks, openai.AsyncStream)
                        async for chunk in chunks:
                            if chunk.choices:
                                text += chunk.choices[0].delta.content or ""
                else:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="auto", messages=messages
                    )
                    headers = raw.headers
                    text = raw.parse().choices[0].message.content or ""
                status = 200
            except openai.APIStatusError as exc:
                headers, text, status = exc.response.headers, "", exc.status_code
        model = headers.get("x-mixroute-model", "-")
        results.append(
            Result(
                row["category"],
                headers.get("x-mixroute-route", "-"),
                model,
                int(headers.get("x-mixroute-fallbacks", "0")),
                streamed,
                status,
                f"[{STAND_INS.get(model, '?')}]" in text,
            )
        )

    await asyncio.gather(*(one(i, row) for i, row in enumerate(prompts)))
    await client.close()
    return results


def _report(results: list[Result], ledger: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from mixroute.usage import usage_report

    console = Console()
    ok = [r for r in results if r.status == 200]
    console.print(
        f"\n[bold]{len(results)}[/] requests in {seconds:.1f} s "
        f"({sum(r.streamed for r in results)} streamed), {len(ok)} answered; "
        f"every answer names the stand-in that wrote it: "
        f"{all(r.says_model for r in ok)}"
    )
    for title, key in (("model", "model"), ("route", "route")):
        table = Table(title=f"traffic by {title}")
        table.add_column(title)
        table.add_column("requests", justify="right")
        table.add_column("share", justify="right")
        for name, n in Counter(getattr(r, key) for r in results).most_common():
            table.add_row(name, str(n), f"{n / len(results):.0%}")
        console.print(table)
    fell = [r for r in results if r.fallbacks]
    console.print(
        f"fallbacks: {len(fell)} requests answered after a failed candidate "
        f"(the small stand-in refuses about {FAIL_SHARE:.0%} of its prompts); "
        f"by answering model: {dict(Counter(r.model for r in fell))}"
    )
    agree = sum(r.route == r.category for r in results)
    console.print(
        f"routing: {agree}/{len(results)} prompts went to the route matching "
        "their dataset label (they come from the development split the shipped "
        "classifier learned from, so this is no accuracy measure)"
    )
    t = usage_report(ledger)["total"]
    console.print(
        f"cost: ${t['cost_usd']:.5f} for {t['input_tokens']}+{t['output_tokens']} "
        f"tokens, against ${t['baseline_cost_usd']:.5f} if everything went to the "
        f"premium model: [bold green]{t['saving_share']:.0%} saved[/] "
        f"(prices from the default config; stand-in answers are short)"
    )
    console.print(f"ledger: {ledger}  (try: mixroute usage --ledger {ledger})")


def main() -> None:
    """Run the demo end to end and print the report."""
    prompts = load_prompts()
    work = Path(tempfile.mkdtemp(prefix="mixroute-demo-"))
    ledger = work / "usage.sqlite"

    loop = asyncio.new_event_loop()
    runners, urls = loop.run_until_complete(_start_stand_ins())
    stand_in_thread = threading.Thread(target=loop.run_forever, daemon=True)
    stand_in_thread.start()
    for name, url in urls.items():
        os.environ[f"MIXROUTE_{name.upper()}_BASE_URL"] = url
        os.environ[f"MIXROUTE_{name.upper()}_MODEL"] = STAND_INS[name]
    print(f"stand-in upstreams (not models): {urls}", flush=True)

    server, thread, base_url = _start_gateway(ledger)
    print(f"mixroute gateway: {base_url}; sending {len(prompts)} prompts", flush=True)
    started = time.monotonic()
    try:
        results = asyncio.run(_send_all(base_url, prompts))
    finally:
        server.should_exit = True
        thread.join(30)
        for runner in runners:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
    _report(results, ledger, time.monotonic() - started)
    answered = sum(1 for r in results if r.status == 200)
    if answered < len(results) // 2:
        print(
            f"demo failed: only {answered} of {len(results)} requests were answered",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
