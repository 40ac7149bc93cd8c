"""``LiveApp``: the served ASGI app, with hot reload and a clean stop.

The gateway built from one config, and the Starlette app around it, form one
immutable *runtime*. ``LiveApp`` holds the current runtime and hands each
request to the runtime that was current when the request arrived, so a request
in flight keeps its models, routes and policies to the end even while a
reload swaps in a new runtime.

A reload (``SIGHUP``, or the config file changing on disk: its mtime, size and
inode are checked every ``server.reload_poll_s`` seconds) reads and validates
the file, builds a new gateway on the same state store, response cache and
usage ledger, warms it up, and only then swaps it in: one assignment on the
event loop, so no request ever sees half of each. An invalid file is rejected
with one ERROR line listing every problem, and the old runtime keeps serving.
The old gateway's upstream connections are closed once its last request has
finished. The ``state``, ``cache`` and ``server`` sections are read at start
only; a reload that changes them says so in a WARNING.

Shutdown (SIGTERM) is uvicorn's: it stops accepting, lets in-flight requests
and streams finish for up to ``server.shutdown_timeout_s``, then runs the
lifespan shutdown here, which flushes the ledger and closes shared state.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from mixroute.classify.base import Classifier
from mixroute.config import load_config
from mixroute.config.schema import MixrouteConfig
from mixroute.errors import ConfigError
from mixroute.upstream.pool import RetryPolicy

from . import heap
from .app import build_gateway, create_app
from .gateway import Gateway
from .wire import Receive, Scope, Send

log = logging.getLogger("mixroute.reload")
# Settings read once at start: the state store, cache, listener and ledger
# outlive a reload, so a change to them needs a restart. The rest of
# ``server`` is read again by the gateway a reload builds.
_START_ONLY = (
    "state",
    "cache",
    "server.host",
    "server.port",
    "server.ledger_path",
    "server.shutdown_timeout_s",
    "server.reload_poll_s",
)


def _setting(config: MixrouteConfig, path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    return value


# How long a replaced gateway may take to finish its last requests before its
# connections are closed anyway.
_RETIRE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Runtime:
    """One config's gateway and the app that serves it; never changed.

    The app's own lifespan (its middleware's start-up work, such as the log
    redaction the guards install) runs while the runtime serves; the gateway
    is started and stopped here instead, because gateways share one ledger and
    state store across reloads.
    """

    config: MixrouteConfig
    gateway: Gateway
    app: Starlette
    lifespan: AppLifespan

    @classmethod
    def of(cls, config: MixrouteConfig, gateway: Gateway) -> Runtime:
        app = create_app(config, gateway=gateway, manage_gateway=False)
        return cls(config, gateway, app, AppLifespan(app))


class AppLifespan:
    """Drives an ASGI app's lifespan protocol by hand: start-up now, shut-down
    when its runtime is retired."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        """Run the app's start-up; raise when it fails."""
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": {},
        }

        async def send(message: MutableMapping[str, Any]) -> None:
            await self._outbox.put(dict(message))

        self._task = asyncio.ensure_future(self.app(scope, self._inbox.get, send))
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._reply()
        if reply["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"app start-up failed: {reply.get('message', '')}")

    async def shutdown(self) -> None:
        """Run the app's shut-down (bounded; failures are logged)."""
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._reply(), 10.0)
            await asyncio.wait_for(self._task, 10.0)
        except Exception:
            log.warning("an app's lifespan shut-down failed", exc_info=True)

    async def _reply(self) -> dict[str, Any]:
        assert self._task is not None
        got = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait({got, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if got.done():
            return got.result()
        got.cancel()
        error = self._task.exception()
        return {"type": "lifespan.failed", "message": repr(error)}


class LiveApp:
    """The ASGI app ``mixroute serve`` runs (see the module doc)."""

    def __init__(
        self,
        config: MixrouteConfig,
        *,
        config_path: str | Path | None = None,
        config_text: str | None = None,
        classifier: Classifier | None = None,
        retry: RetryPolicy | None = None,
        tune_gc: bool = False,
    ) -> None:
        self.config_path = Path(config_path) if config_path is not None else None
        # Only a serving process tunes the collector (``heap``), not a test's.
        self.tune_gc = tune_gc
        self.poll_s = config.server.reload_poll_s
        self._classifier = classifier
        self._retry = retry
        gw = build_gateway(
            config, classifier=classifier, retry=retry, config_text=config_text
        )
        self.runtime = Runtime.of(config, gw)
        self.reloads = 0
        self._active: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retiring: list[Runtime] = []
        self._lock: asyncio.Lock | None = None
        self._seen = self._signature()
        self._hup = False

    # serving ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        runtime = self.runtime  # this request keeps this runtime to its end
        key = id(runtime.gateway)
        self._active[key] = self._active.get(key, 0) + 1
        try:
            await runtime.app(scope, receive, send)
        finally:
            self._active[key] -= 1
            if self._active[key] == 0 and key in self._idle:
                self._idle[key].set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("mixroute failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Start the gateway, and the SIGHUP handler and file watch."""
        self._lock = asyncio.Lock()
        await self.runtime.gateway.start()
        await self.runtime.lifespan.startup()
        loop = asyncio.get_running_loop()
        try:
            # Installed even without a file: SIGHUP's default would kill us.
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
            self._hup = True
        except (NotImplementedError, RuntimeError, AttributeError):
            log.info("SIGHUP is not available here; reload by editing the file")
        if self.config_path is not None and self.poll_s > 0:
            self._spawn(self._watch())
        self._settle_heap()

    def _settle_heap(self) -> None:
        if self.tune_gc:
            heap.settle(self.runtime.config.server.gc_young_threshold)

    async def shutdown(self) -> None:
        """Stop watching, retire replaced gateways, stop the current one (the
        ledger is flushed, shared state closed)."""
        if self._hup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._hup = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for old in self._retiring:
            await old.lifespan.shutdown()
            await _close(old.gateway)
        self._retiring.clear()
        await self.runtime.lifespan.shutdown()
        await self.runtime.gateway.stop()
        log.info("mixroute stopped; usage ledger flushed")

    # reload ----------------------------------------------------------------

    async def reload(self, reason: str = "requested") -> bool:
        """Load the config file again and swap it in; False when rejected."""
        if self.config_path is None:
            log.warning(
                "Reload ignored: mixroute serves its embedded config; start it "
                "with --config FILE to reload that file"
            )
            return False
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._seen = self._signature()
            return await self._reload(self.config_path, reason)

    async def _reload(self, path: Path, reason: str) -> bool:
        try:
            text = await asyncio.to_thread(path.read_text, "utf-8")
            config = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            log.error(
                "Config reload (%s) rejected, the previous config keeps serving. "
                "%d problem(s) in %s: %s",
                reason,
                len(exc.problems),
                path,
                "; ".join(exc.problems),
            )
            return False
        except (OSError, UnicodeDecodeError) as exc:
            log.error(
                "Config reload (%s) rejected, the previous config keeps serving: "
                "cannot read %s: %s",
                reason,
                path,
                exc,
            )
            return False

        old = self.runtime
        try:
            new = await self._build(config, text, old.gateway)
        except Exception as exc:
            log.error(
                "Config reload (%s) failed while building the new gateway, the "
                "previous config keeps serving: %s",
                reason,
                exc,
            )
            return False
        self.runtime = new
        self.reloads += 1
        log.info(
            "Config reloaded from %s (%s): %d models, %d routes",
            path,
            reason,
            len(config.models),
            len(config.routes),
        )
        changed = [
            p for p in _START_ONLY if _setting(config, p) != _setting(old.config, p)
        ]
        if changed:
            log.warning(
                "The %s setting(s) changed; they take effect at the next restart",
                ", ".join(changed),
            )
        self._spawn(self._retire(old))
        return True

    async def _build(self, config: MixrouteConfig, text: str, old: Gateway) -> Runtime:
        classifier = self._classifier
        if classifier is None:
            # Building a classifier may load an encoder: not on the event loop.
            import importlib

            classify = importlib.import_module("mixroute.classify")
            build: Callable[[MixrouteConfig], Classifier] = classify.build_classifier
            classifier = await asyncio.to_thread(build, config)
        gw = build_gateway(
            config,
            classifier=classifier,
            retry=self._retry,
            config_text=text,
            store=old.store,
            cache=old.cache,
            ledger=old.ledger,
            obs=old.obs,
        )
        runtime = Runtime.of(config, gw)
        try:
            await gw.start()  # the shared ledger is running already
            await runtime.lifespan.startup()
        except BaseException:
            await _close(gw)
            raise
        return runtime

    async def _retire(self, old: Runtime) -> None:
        self._retiring.append(old)
        key = id(old.gateway)
        if self._active.get(key, 0) > 0:
            idle = self._idle.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(idle.wait(), _RETIRE_TIMEOUT_S)
            except TimeoutError:
                log.warning("closing a replaced gateway with requests still open")
        self._idle.pop(key, None)
        self._active.pop(key, None)
        self._retiring.remove(old)
        await old.lifespan.shutdown()
        await _close(old.gateway)
        del old
        self._settle_heap()  # the new config's state frozen, the old one freed

    def _on_hup(self) -> None:
        log.info("SIGHUP received: reloading %s", self.config_path or "-")
        self._spawn(self.reload("SIGHUP"))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            seen = await asyncio.to_thread(self._signature)
            if seen is not None and seen != self._seen:
                await self.reload("file changed")

    def _signature(self) -> tuple[int, int, int] | None:
        # mtime, size and inode: a ConfigMap update swaps a symlink (new
        # inode), an editor may keep the mtime within one tick.
        if self.config_path is None:
            return None
        try:
            st = os.stat(self.config_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _close(gw: Gateway) -> None:
    # A replaced gateway: its own connections, threads and feedback book, not
    # the shared ledger, state store or cache (the current gateway uses them).
    await gw.drain()
    if gw.engine is not None:
        await gw.engine.close()
    await gw.pool.close()
    gw.executor.shutdown(wait=False, cancel_futures=True)
