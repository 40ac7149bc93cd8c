"""The gateway: decide, check, call upstream with fallback, account.

``Gateway`` is built once from the config and shared by the endpoints. Each
request passes through small steps with one job each: ``decide`` (classify off
the event loop, or honour an explicit model or route), ``plan`` (drop
candidates whose context window is too small or that have no endpoint),
``complete`` / ``stream`` (call upstream, falling back across candidates) and
``account`` (one ledger row).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from mixroute.cache.response import ResponseCache
from mixroute.classify.base import Classification, Classifier
from mixroute.config.schema import MixrouteConfig, ModelConfig
from mixroute.errors import (
    ClientError,
    MixrouteError,
    UnsendableRequest,
    UpstreamError,
    UpstreamStatusError,
)
from mixroute.obs import Observer, access_fields
from mixroute.policy.decision import RoutingDecision, SeedPolicy
from mixroute.policy.engine import PolicyEngine
from mixroute.policy.request import PolicyRequest
from mixroute.policy.wiring import body_for_model, outcome_of
from mixroute.providers import get_provider
from mixroute.providers.base import Kind, Usage
from mixroute.state.base import StateStore
from mixroute.state.ledger import Ledger
from mixroute.state.memory import MemoryStore
from mixroute.tokens import count_message_tokens, count_tokens
from mixroute.upstream.pool import UpstreamPool, is_client_fault

from .context import CLIENT_CLOSED, SERVER_STOPPED, RequestContext
from .hints import UpstreamHints

log = logging.getLogger("mixroute")
T = TypeVar("T")
access_log = logging.getLogger("mixroute.access")
_MAX_ERROR = 300


class AllCandidatesFailed(UpstreamError):
    """Every candidate model failed or was unavailable."""

    reason = "all_failed"
    retryable = False
    #: The shortest Retry-After when every candidate answered 429 with one.
    retry_after: float | None = None


def wait_of(exc: UpstreamError) -> float | None:
    """The Retry-After of a 429, else None."""
    if isinstance(exc, UpstreamStatusError) and exc.status == 429:
        return exc.retry_after
    return None


class Attempts:
    """The candidates a request tried and why each failed: one place decides
    whether a failure falls back, goes back to the client, or ends the request,
    for whole answers and streams alike."""

    def __init__(self, gateway: Gateway, ctx: RequestContext) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.failures: list[str] = []
        # Each failure's Retry-After (None unless a 429 named one).
        self.waits: list[float | None] = []

    def failed(
        self,
        model: ModelConfig,
        exc: MixrouteError,
        key: str | None,
        *,
        mid_stream: bool = False,
    ) -> None:
        """Record ``exc`` from ``model`` so the next candidate can try, or
        raise when no other candidate could do better."""
        if isinstance(exc, UnsendableRequest):
            raise exc  # the same body fails for every model
        if isinstance(exc, ClientError):
            # This provider cannot express the request; another may.
            self.failures.append(f"{model.name} ({exc.message})")
            self.waits.append(None)
            return
        assert isinstance(exc, UpstreamError)
        if not mid_stream and is_client_fault(exc):
            raise self.gateway.client_fault(model, exc, key) from None
        self.failures.append(f"{model.name} ({exc.reason})")
        self.waits.append(None if mid_stream else wait_of(exc))
        self.gateway._warn_fallback(self.ctx, model, exc)

    def exhausted(self) -> AllCandidatesFailed:
        """The error once every candidate failed."""
        exc = AllCandidatesFailed(
            "Every candidate model failed: " + "; ".join(self.failures) + "."
        )
        known = [w for w in self.waits if w is not None]
        if known and len(known) == len(self.waits):
            exc.retry_after = min(known)
        return exc


class Gateway:
    """Everything a request needs, built once at start-up."""

    def __init__(
        self,
        config: MixrouteConfig,
        classifier: Classifier,
        pool: UpstreamPool,
        ledger: Ledger,
        *,
        policy: SeedPolicy | None = None,
        config_text: str | None = None,
        engine: PolicyEngine | None = None,
        store: StateStore | None = None,
        cache: ResponseCache | None = None,
        obs: Observer | None = None,
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.pool = pool
        self.ledger = ledger
        self.policy = policy or SeedPolicy(config)
        # The policy engine (issue 4); None keeps the seed policy alone.
        self.engine = engine
        # Shared state (memory, or Redis for replicas) and the response cache:
        # both outlive a config reload, so they are handed in (api.app).
        self.store: StateStore = store if store is not None else MemoryStore()
        self.cache = cache
        self._policy_tasks: set[asyncio.Task[None]] = set()
        self.executor = ThreadPoolExecutor(
            config.server.classify_workers, thread_name_prefix="mixroute-classify"
        )
        self.models = {m.name: m for m in config.models}
        self.routes = set(config.route_names)
        self.valid_names = ["auto", *(f"auto:{r}" for r in config.route_names)]
        self.valid_names += config.model_names
        self.classifier_warm = False
        self._hints = UpstreamHints(config, config_text)
        # Metrics, live totals and tracing; handed on by a config reload.
        self.obs = obs or Observer(config)
        self.obs.bind(config, pool.breakers)

    async def start(self) -> None:
        await self.pool.start()
        self.ledger.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.classifier.classify, "warm up")
        self.classifier_warm = True

    async def drain(self, timeout_s: float = 5.0) -> None:
        """Wait for the policy bookkeeping of finished requests, at most
        ``timeout_s`` seconds (then it is cancelled)."""
        if self._policy_tasks:
            # Bounded: a backlog of bookkeeping must not hold shutdown hostage.
            _, late = await asyncio.wait(self._policy_tasks, timeout=timeout_s)
            for task in late:
                task.cancel()

    async def stop(self) -> None:
        await self.drain()
        if self.engine is not None:
            await self.engine.close()  # the feedback book
        await self.pool.close()
        self.ledger.close()
        if self.cache is not None:
            await self.cache.close()
        await self.store.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run CPU-bound ``fn`` on the gateway's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, functools.partial(fn, *args, **kwargs)
        )

    # decide ------------------------------------------------------------------

    def start_classification(
        self, messages: Sequence[Mapping[str, Any]], *, short: bool = False
    ) -> asyncio.Future[Classification]:
        """Classify on the thread pool; await the future when it is needed.

        A ``short`` prompt is first looked up in the classifier's cache here on
        the event loop: a repeated prompt then costs no trip to the pool."""
        loop = asyncio.get_running_loop()
        if short:
            hit = self.classifier.lookup_messages(messages)
            if hit is not None:
                done: asyncio.Future[Classification] = loop.create_future()
                done.set_result(hit)
                return done
        return loop.run_in_executor(
            self.executor, self.classifier.classify_messages, messages
        )

    async def decide(
        self,
        model: str,
        pending: asyncio.Future[Classification] | None,
        *,
        request: PolicyRequest | None = None,
    ) -> RoutingDecision:
        """The routing decision for the ``model`` field of a request."""
        if self.engine is not None and request is not None and self._known(model):
            if model != "auto" or pending is not None:
                c = await pending if pending is not None else None
                return await self.engine.decide(c, request)
        if model == "auto":
            if pending is None:
                raise ClientError("There is no prompt to classify.", param="messages")
            return self.policy.decide(await pending)
        if model.startswith("auto:") and model[5:] in self.routes:
            return self.policy.for_route(model[5:])
        if model in self.models:
            return self.policy.for_model(model)
        raise ClientError(
            f"The model '{model}' does not exist. Valid names: "
            f"{', '.join(self.valid_names)}.",
            status=404,
            code="model_not_found",
            param="model",
            type="invalid_request_error",
        )

    def _known(self, model: str) -> bool:
        return model in self.models or model in self.valid_names

    def _trims(self, ctx: RequestContext) -> bool:
        # The policy engine condenses chat history per model (policy/context.py).
        e = self.engine
        return e is not None and e.config.policies.context.trim and bool(ctx.messages)

    async def _trim_floor(self, ctx: RequestContext, tokens: int) -> int:
        # With trimming, a model only has to hold the latest turns. Tokenizing
        # them is CPU work (about a second a megabyte): off the event loop.
        if self.engine is None or not self._trims(ctx):
            return tokens
        return await self.off_loop(self.engine.min_prompt_tokens, ctx.messages or [])

    async def prepared_body(
        self, ctx: RequestContext, model: ModelConfig, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """``body`` for one candidate: the policy's provider parameters and, when
        the model cannot hold the whole history, the condensed history (that
        tokenizes, so it runs off the event loop)."""
        if self.engine is None or ctx.decision is None:
            return body
        if self._fits_whole(ctx, model, body):
            # Trimming would keep every message: only the provider parameters.
            out, _ = body_for_model(
                self.engine, ctx.decision, model.name, body, trim=False
            )
            return out
        return await self.off_loop(self._condensed, ctx, model, body)

    def _condensed(
        self, ctx: RequestContext, model: ModelConfig, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        assert self.engine is not None and ctx.decision is not None
        out, ctx.context_trimmed = body_for_model(
            self.engine, ctx.decision, model.name, body
        )
        return out

    @staticmethod
    def _fits_whole(
        ctx: RequestContext, model: ModelConfig, body: Mapping[str, Any]
    ) -> bool:
        # The body's byte count bounds the prompt's token count.
        if not ctx.body_size:
            return False
        out = body.get("max_completion_tokens") or body.get("max_tokens")
        reserve = (
            out
            if isinstance(out, int)
            else min(model.max_output_tokens, model.context_window // 4)
        )
        return ctx.body_size + reserve <= model.context_window

    # plan --------------------------------------------------------------------

    async def plan(
        self, ctx: RequestContext, body_size: int, max_out: int | None
    ) -> list[ModelConfig]:
        """Candidates that fit the prompt and have an endpoint, in order."""
        assert ctx.decision is not None
        models = [self.models[n] for n in ctx.decision.candidates if n in self.models]
        need = max_out or 0
        # The body's byte count bounds its token count, so most requests skip
        # the tokenizer; only near a context window do we count for real.
        fits = [m for m in models if body_size + need <= m.context_window]
        if len(fits) < len(models):
            tokens = ctx.prompt_tokens or await self._count_prompt(ctx)
            ctx.prompt_tokens = tokens
            floor = await self._trim_floor(ctx, tokens)
            fits = [m for m in models if floor + need <= m.context_window]
            if not fits:
                window = max(m.context_window for m in models)
                raise ClientError(
                    f"This request needs about {tokens + need} tokens "
                    f"({tokens} in the prompt, {need} for the answer), more than "
                    f"the largest context window of its candidate models "
                    f"({window} tokens). Shorten the messages or max_tokens.",
                    code="context_length_exceeded",
                    param="messages",
                )
        ready = [m for m in fits if m.configured]
        if ready:
            # Say so when the router's pick had no endpoint and a later
            # candidate answers instead.
            first = fits.index(ready[0])
            ctx.skipped_unconfigured = [m.name for m in fits[:first]]
        if not ready:
            raise ClientError(
                "No upstream is configured for the models this request may use "
                f"({', '.join(m.name for m in fits)}). {self._hints.sentence(fits)}",
                status=503,
                code="upstream_not_configured",
                type="server_error",
                # Retrying cannot help until the operator sets the variables;
                # the openai SDKs honour this header.
                headers={"x-should-retry": "false"},
            )
        return ready

    async def _count_prompt(self, ctx: RequestContext) -> int:
        loop = asyncio.get_running_loop()
        if ctx.messages is not None:
            return await loop.run_in_executor(
                self.executor, count_message_tokens, ctx.messages
            )
        return await loop.run_in_executor(
            self.executor, count_tokens, ctx.prompt_text or ""
        )

    # call --------------------------------------------------------------------

    async def complete(
        self,
        ctx: RequestContext,
        kind: Kind,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> dict[str, Any]:
        """A whole answer from the first candidate that gives one."""
        attempts = Attempts(self, ctx)
        for model in ctx.candidates:
            ctx.models_tried.append(model.name)
            provider = get_provider(model.provider)
            key = self.pool.api_key(model.name)
            try:
                req = provider.build_request(
                    model,
                    kind,
                    await self.prepared_body(ctx, model, body),
                    stream=False,
                    api_key=key,
                )
                with self.obs.span("mixroute.upstream", {"model": model.name}):
                    raw, data = await self.pool.request_answer(model, req, headers)
                if not isinstance(data, Mapping):
                    raise UpstreamError("The upstream answer is not an object.")
                response, usage = provider.parse_response(model, kind, data)
            except (ClientError, UpstreamError) as exc:
                attempts.failed(model, exc, key)
                continue
            ctx.model = model.name
            ctx.usage = usage
            # Only plain UTF-8 goes on as sent: a BOM or UTF-16/32 answer (the
            # json module reads those) is encoded again as UTF-8.
            plain = json.detect_encoding(raw) == "utf-8"
            ctx.answer_bytes = raw if plain and provider.passes_answer_through else None
            return response
        raise attempts.exhausted()

    def client_fault(
        self, model: ModelConfig, exc: UpstreamError, key: str | None
    ) -> ClientError:
        """An upstream 4xx, passed on in OpenAI's shape without secrets."""
        status = exc.status or 400
        data: Any = None
        body = getattr(exc, "body", b"")
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        message = get_provider(model.provider).error_message(status, data)
        if key:
            message = message.replace(key, "***")
        err = data.get("error") if isinstance(data, Mapping) else None
        type_, code, param = "invalid_request_error", None, None
        if isinstance(err, Mapping):
            type_ = _str(err.get("type")) or type_
            code = _str(err.get("code"))
            param = _str(err.get("param"))
        return ClientError(
            message[: _MAX_ERROR * 4],
            status=status,
            code=code,
            param=param,
            type=type_,
        )

    def _warn_fallback(
        self, ctx: RequestContext, model: ModelConfig, exc: UpstreamError
    ) -> None:
        self.obs.upstream_error(model.name, exc.reason)
        log.warning(
            "request %s: model %s failed (%s); falling back",
            ctx.request_id,
            model.name,
            exc.reason,
        )

    # account -----------------------------------------------------------------

    def account(self, ctx: RequestContext) -> None:
        """Write the ledger row and the access log line for a finished request."""
        if ctx.usage is None and ctx.model is not None:
            # No usage from upstream (a drop or a hang-up): estimate what was used.
            prompt = ctx.prompt_tokens
            if prompt is None:
                prompt = _rough_tokens(ctx)
            ctx.usage = Usage(prompt, (ctx.output_chars + 3) // 4)
        row = ctx.to_row(self.config)
        self.ledger.record(row)
        c = ctx.decision.classification if ctx.decision is not None else None
        self.obs.finished(
            row,
            classify_ms=c.latency_ms if c is not None else None,
            key_name=ctx.key_name,
        )
        if self.engine is not None and ctx.decision is not None:
            if ctx.cache_hit:
                self._release_policy(ctx)
            else:
                self._record_policy(ctx, row)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                '%s "%s" %d model=%s route=%s fallbacks=%d tokens=%d/%d %.1fms',
                row.request_id,
                ctx.kind or "-",
                row.status,
                row.model or "-",
                row.route or "-",
                ctx.fallbacks,
                row.input_tokens,
                row.output_tokens,
                row.latency_ms,
                extra=access_fields(row, ctx.fallbacks, ctx.key_name),
            )

    def _release_policy(self, ctx: RequestContext) -> None:
        # A cached answer called no model: its budget reservation is given back,
        # and health and A/B statistics learn nothing from it.
        assert self.engine is not None and ctx.decision is not None
        task = asyncio.ensure_future(
            _quietly(self.engine.release(ctx.decision), ctx.request_id)
        )
        self._policy_tasks.add(task)
        task.add_done_callback(self._policy_tasks.discard)

    def _record_policy(self, ctx: RequestContext, row: Any) -> None:
        assert self.engine is not None and ctx.decision is not None
        status = row.status
        if ctx.error == SERVER_STOPPED:
            # Our own shutdown cut the answer: not the model's failure.
            status = CLIENT_CLOSED
        outcome = outcome_of(
            status=status,
            model=ctx.model,
            tried=ctx.models_tried,
            latency_ms=row.latency_ms,
            ttft_ms=row.ttft_ms,
            cost_usd=row.cost_usd,
        )
        try:
            # Health and feedback are noted at once; a task only when budgets,
            # A/B tests or session pins need the state store.
            stored = self.engine.record_now(ctx.decision, outcome)
        except Exception:
            log.exception(
                "request %s: recording the policy outcome failed", ctx.request_id
            )
            return
        if stored is None:
            return
        task = asyncio.ensure_future(_quietly(stored, ctx.request_id))
        self._policy_tasks.add(task)
        task.add_done_callback(self._policy_tasks.discard)


async def _quietly(work: Any, request_id: str) -> None:
    # Policy bookkeeping must never fail a request that already has its answer.
    try:
        await work
    except Exception:
        log.exception("request %s: recording the policy outcome failed", request_id)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _rough_tokens(ctx: RequestContext) -> int:
    chars = len(ctx.prompt_text or "")
    for m in ctx.messages or ():
        content = m.get("content") if isinstance(m, Mapping) else None
        chars += len(content) if isinstance(content, str) else 0
    return (chars + 3) // 4
