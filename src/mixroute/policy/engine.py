"""The policy engine: classification + request + live state → decision.

``decide`` starts from the seed policy's decision (threshold rule, tier
candidates, fallback chains) and applies, in this order, each rule that is
configured and has something to say; every one that changed the outcome adds
its name to ``RoutingDecision.rule`` (joined by ``>``):

1. ``cost-quality:p=<difficulty>`` — cheapest candidate expected to meet the
   route's quality bar (``policy/costq.py``); only for confident or
   ``auto:<route>`` decisions.
2. ``time:<rule>`` — time-of-day/weekday preferences.
3. ``ab:<test>:<arm>`` — sticky A/B split of the production model.
4. ``pref:avoid=<model>`` — the user keeps rating the pick low on this route.
5. ``session:pinned`` — the conversation stays on its model.
6. ``capability:skip=<models>`` and ``context:trim`` — what cannot serve the
   request is dropped; a window too small for the history means trimming.
7. ``health:skip=<models>`` — unhealthy models go behind healthy ones.
8. ``budget:step-down`` — a budget near (or at) its limit moves the request
   to a cheaper candidate; with no room left at all, ``ClientError`` 429
   ``budget_exceeded`` names the budget.

A request that names a concrete model gets only capability-blind budget
checks: the client chose the model.

``record`` takes the outcome and feeds health, A/B statistics, budget
settlement, session pins and the feedback book.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from mixroute.classify.base import Classification
from mixroute.config.policies import check_policy_references
from mixroute.config.schema import MixrouteConfig, ModelConfig, RouteConfig
from mixroute.errors import ClientError, ConfigError
from mixroute.policy.ab import ABAssignment, ABSplitter
from mixroute.policy.budgets import BudgetBook, Reservation
from mixroute.policy.capabilities import (
    fits,
    lacks,
    output_reserve,
    reasoning_params,
    route_effort,
)
from mixroute.policy.clock import Clock, SystemClock
from mixroute.policy.context import (
    Summariser,
    condense_messages,
    trim_floor,
    trim_messages,
)
from mixroute.policy.costq import (
    DifficultyScorerLike,
    blended_price,
    rank_cost_quality,
    worst_case_cost,
)
from mixroute.policy.decision import PolicyTrace, RoutingDecision, SeedPolicy
from mixroute.policy.feedback import FeedbackBook, feedback_path
from mixroute.policy.health import CircuitState, HealthView
from mixroute.policy.request import Outcome, PolicyRequest
from mixroute.policy.sessions import SessionPins, session_key
from mixroute.policy.store import MemoryPolicyStore, PolicyStore
from mixroute.policy.timerules import TimeRules

log = logging.getLogger("mixroute.policy")


class PolicyEngine:
    """Decides who answers a request, and learns from how it went.

    ``store`` holds shared state (sessions, budgets, A/B counters); ``clock``
    tells the time (``FakeClock`` in tests); ``difficulty_scorer`` scores a
    prompt's hard probability for cost-quality routing (the classification's
    ``hard_probability`` serves without one); ``feedback`` is the ratings book
    (default: the SQLite file ``feedback_path(config)`` when enabled);
    ``breaker_state`` reads the upstream circuit breakers by model name.
    Raises ``ConfigError`` when the policies name unknown models or routes.
    """

    def __init__(
        self,
        config: MixrouteConfig,
        store: PolicyStore | None = None,
        clock: Clock | None = None,
        difficulty_scorer: DifficultyScorerLike | None = None,
        *,
        feedback: FeedbackBook | None = None,
        breaker_state: Callable[[str], CircuitState | None] | None = None,
    ) -> None:
        problems = check_policy_references(config)
        if problems:
            raise ConfigError(problems)
        p = config.policies
        self.config = config
        self.clock = clock or SystemClock()
        self.store = store or MemoryPolicyStore(self.clock)
        self.scorer = difficulty_scorer
        self.seed = SeedPolicy(config)
        self.ab = ABSplitter(p.ab_tests, self.store)
        self.sessions = SessionPins(p.sessions, self.store)
        self.budgets = BudgetBook(p.budgets, self.store, p.timezone)
        self.time_rules = TimeRules(p.time_rules, p.timezone)
        self.health = HealthView(p.health, breaker_state)
        if feedback is None and p.feedback.enabled:
            feedback = FeedbackBook(feedback_path(config))
        self.feedback = feedback
        self._models = {m.name: m for m in config.models}
        # The prompt room of the tightest model, without and with max_tokens.
        self._room_default = min(
            (m.context_window - output_reserve(m, None) for m in config.models),
            default=0,
        )
        self._smallest_window = min(
            (m.context_window for m in config.models), default=0
        )
        self._refreshed = float("-inf")
        self._background: set[asyncio.Future[None]] = set()

    # -- deciding ---------------------------------------------------------

    async def decide(
        self, classification: Classification | None, request: PolicyRequest
    ) -> RoutingDecision:
        """The routing decision for ``request`` (see the module doc for the
        rule order). Raises ``ClientError`` 404 for an unknown model or route,
        400 when no candidate has the capabilities the request needs, 429
        ``budget_exceeded`` when a budget has no room."""
        known = self._explicit(request)
        if known is not None:
            return known
        now = request.now or self.clock.now()
        if not self._counted_enough(request):
            request = await self._counted(request)
        self._refresh_feedback(now.timestamp())
        route_name, chain, rule = self._base(classification, request)
        route = self.config.route(route_name) if route_name else None
        explicit = rule == "explicit:model"
        order = list(chain)
        rules = [rule]
        notes: list[str] = []
        difficulty: float | None = None
        assignment: ABAssignment | None = None
        pin_key = None

        if route is not None and not explicit:
            knob, share = self._knob(route)
            if (knob is not None or share is not None) and rule.startswith(
                ("route:confident", "explicit:route")
            ):
                difficulty = await self._difficulty(classification, request)
                pool = [m for tier in route.tiers.values() for m in tier]
                pick = rank_cost_quality(
                    [*pool, *route.candidates],
                    difficulty,
                    knob or 0.0,
                    quality=lambda m: self.quality(route, m),
                    price=lambda m: self._price(m),
                    scorer=self.scorer,
                    share=share,
                )
                order = self.seed.chain(list(pick.order))
                rules.append(f"cost-quality:p={difficulty:.2f}")

            order, fired = self.time_rules.apply(
                order, route.name, now, lambda m: self._model(m).local
            )
            rules += [f"time:{name}" for name in fired]

            test = self.ab.test_for(route.name, order[0])
            if test is not None:
                user = request.principal or request.request_id
                assignment = await self.ab.assign(test, user, now)
                order = _front(order, assignment.model)
                rules.append(f"ab:{test.name}:{assignment.arm}")

            order, avoided = self._steer_by_preference(order, route, request)
            if avoided:
                rules.append(f"pref:avoid={avoided}")

        if not explicit and self.config.policies.sessions.enabled:
            pin_key = session_key(request)
            pinned = await self.sessions.pinned(pin_key) if pin_key else None
            if assignment is not None and assignment.arm == "production":
                # A halted (or shrunk) roll-out takes its users back to
                # production, pinned conversations included.
                test = self.ab.by_name(assignment.test)
                if test is not None and pinned == test.candidate:
                    pinned = None
            if pinned in self._models:
                assert pinned is not None
                if pinned != order[0]:
                    rules.append("session:pinned")
                order = _front(order, pinned)

        if not explicit:
            floor = await self._floor(order, request)
            order, skipped, trim = self._filter_capable(order, request, floor)
            if skipped:
                rules.append(f"capability:skip={','.join(skipped)}")
            if trim:
                rules.append("context:trim")
                notes.append("context:trimmed")
            order, sick = self._order_by_health(order, now.timestamp())
            if sick:
                rules.append(f"health:skip={','.join(sick)}")

        reservations: tuple[Reservation, ...] = ()
        reserved = 0.0
        if self.config.policies.budgets:
            order, reservations, reserved, step = await self._reserve(
                order, route, request, now, explicit
            )
            if step:
                rules.append(step)

        trace = PolicyTrace(
            request=request,
            ab=assignment,
            reservations=reservations,
            reserved_usd=reserved,
            session_key=pin_key,
            difficulty=difficulty,
        )
        return RoutingDecision(
            model=order[0],
            candidates=tuple(order),
            route=route_name,
            rule=">".join(rules),
            classification=classification,
            notes=tuple(notes),
            trace=trace,
        )

    def _explicit(self, request: PolicyRequest) -> RoutingDecision | None:
        # A request naming a model when no budget is configured: no rule
        # applies to it (routes, A/B tests, sessions, time, capabilities and
        # health steer only routed requests), so it is the seed's chain with the
        # trace its outcome is recorded against, without the rule pass. None
        # otherwise (with budgets, ``decide`` reserves their share).
        if self.config.policies.budgets or request.model not in self._models:
            return None
        base = self.seed.for_model(request.model)
        return RoutingDecision(
            base.model,
            base.candidates,
            None,
            base.rule,
            trace=PolicyTrace(request=request),
        )

    def _counted_enough(self, req: PolicyRequest) -> bool:
        # Tokenizing every prompt cost more than the rest of the decision; the
        # upper bound from ``from_body`` settles most requests. Budgets price
        # the prompt, so they get the exact count, as does a prompt whose bound
        # does not fit some model's context window.
        return req.prompt_tokens_exact or (
            not self.config.policies.budgets and self._fits_every_model(req)
        )

    async def _counted(self, req: PolicyRequest) -> PolicyRequest:
        # The exact count, for a request ``_counted_enough`` turned down.
        if req.prompt_tokens > _INLINE_COUNT:
            return await asyncio.to_thread(req.exact)
        return req.exact()

    def _fits_every_model(self, req: PolicyRequest) -> bool:
        # ``fits`` for every model at once, from two figures worked out once.
        if req.max_tokens is None:
            return req.prompt_tokens <= self._room_default
        return req.prompt_tokens + req.max_tokens <= self._smallest_window

    def _knob(self, route: RouteConfig) -> tuple[float | None, float | None]:
        # The route's setting wins over the global one; a target share wins
        # over the knob at the same level.
        p = self.config.policies
        if route.target_strong_share is not None:
            return None, route.target_strong_share
        if route.cost_quality is not None:
            return route.cost_quality, None
        return p.cost_quality, p.target_strong_share

    def _refresh_feedback(self, now: float) -> None:
        book = self.feedback
        cfg = self.config.policies.feedback
        if book is None or not book.dirty or now - self._refreshed < cfg.refresh_s:
            return
        self._refreshed = now
        forget = now - cfg.retain_days * 86_400
        if cfg.refresh_s == 0:
            book.refresh(forget)  # tests and tiny books: fresh on every decision
            return
        # A snapshot a moment old is fine; the request does not wait for it.
        task = asyncio.ensure_future(asyncio.to_thread(book.refresh, forget))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _base(
        self, c: Classification | None, req: PolicyRequest
    ) -> tuple[str | None, tuple[str, ...], str]:
        # (route, candidate chain, rule) before the rules run.
        requested = req.model or "auto"
        if requested.startswith("auto:"):
            name = requested.split(":", 1)[1]
            if name not in self.config.route_names:
                raise ClientError(
                    f'The route "{name}" does not exist; routes: '
                    f"{', '.join(self.config.route_names)}.",
                    status=404,
                    code="model_not_found",
                    param="model",
                )
            d = self.seed.for_route(name)
            return d.route, d.candidates, d.rule
        if requested != "auto":
            if requested not in self._models:
                raise ClientError(
                    f'The model "{requested}" does not exist; models: auto, '
                    f"auto:<route>, {', '.join(self.config.model_names)}.",
                    status=404,
                    code="model_not_found",
                    param="model",
                )
            d = self.seed.for_model(requested)
            return d.route, d.candidates, d.rule
        if c is None:
            chain = self.seed.chain([self.config.policies.default_model])
            return None, tuple(chain), "default:unclassified"
        return self.seed.pick(c)

    async def _difficulty(self, c: Classification | None, req: PolicyRequest) -> float:
        if self.scorer is not None and req.text:
            # Scoring is CPU work: keep it off the event loop.
            return float(await asyncio.to_thread(self.scorer.score, req.text, None))
        return c.hard_probability if c is not None else 0.5

    def _steer_by_preference(
        self, order: list[str], route: RouteConfig, req: PolicyRequest
    ) -> tuple[list[str], str | None]:
        prefs = self.config.policies.preferences
        who = req.principal
        if not prefs.enabled or self.feedback is None or who is None:
            return order, None
        first = order[0]

        def disliked(m: str) -> bool:
            assert self.feedback is not None
            mean, n = self.feedback.user_rating(who, route.name, m)
            return n >= prefs.min_ratings and mean < prefs.below

        if not disliked(first):
            return order, None
        bound = route.max_price_per_mtok
        if bound is None:
            bound = self._price(first) * prefs.max_cost_factor
        on_route = set(route.candidates) | {m for t in route.tiers.values() for m in t}
        for m in order[1:]:
            if m in on_route and self._price(m) <= bound and not disliked(m):
                return _front(order, m), first
        return order, None

    async def _floor(self, order: list[str], req: PolicyRequest) -> int | None:
        # The tokens left after the fullest trim, needed only when trimming is
        # on and some candidate cannot hold the whole prompt; a long prompt is
        # tokenized off the event loop (a megabyte takes about a second).
        if not req.messages or not self.config.policies.context.trim:
            return None
        if self._fits_every_model(req) or all(
            fits(self._model(m), req.prompt_tokens, req.max_tokens) for m in order
        ):
            return None
        if req.prompt_tokens > _INLINE_COUNT:
            return await asyncio.to_thread(self.min_prompt_tokens, req.messages)
        return self.min_prompt_tokens(req.messages)

    def _filter_capable(
        self, order: list[str], req: PolicyRequest, floor: int | None
    ) -> tuple[list[str], list[str], bool]:
        n = req.needs
        if not (n.vision or n.tools or n.json) and self._fits_every_model(req):
            return order, [], False  # the usual request: every model can serve it
        able = [m for m in order if not lacks(self._model(m), req.needs)]
        skipped = [m for m in order if m not in able]
        if not able:
            need = sorted({c for m in order for c in lacks(self._model(m), req.needs)})
            raise ClientError(
                "No model this request may use supports "
                f"{' and '.join(need)}; candidates were {', '.join(order)}.",
                code="no_capable_model",
            )
        roomy = [
            m for m in able if fits(self._model(m), req.prompt_tokens, req.max_tokens)
        ]
        tight = [m for m in able if m not in roomy]
        trim_ok = self.config.policies.context.trim
        if not trim_ok:
            if not roomy:
                raise ClientError(
                    f"The prompt ({req.prompt_tokens} tokens) and max_tokens do not "
                    "fit the context window of any candidate "
                    f"({', '.join(able)}).",
                    code="context_length_exceeded",
                    param="messages",
                )
            return roomy, skipped + tight, False
        # Keep the order the rules chose; a model that cannot hold the history
        # still serves, with older turns condensed, if the latest turns fit.
        trimmable = [
            m
            for m in tight
            if floor is not None and fits(self._model(m), floor, req.max_tokens)
        ]
        kept = [m for m in able if m in roomy or m in trimmable]
        if not kept:
            raise ClientError(
                f"The prompt ({req.prompt_tokens} tokens) and max_tokens do not "
                "fit the context window of any candidate, even with older turns "
                f"left out ({', '.join(able)}).",
                code="context_length_exceeded",
                param="messages",
            )
        lost = [m for m in able if m not in kept]
        return kept, skipped + lost, kept[0] in trimmable

    def _order_by_health(
        self, order: list[str], now: float
    ) -> tuple[list[str], list[str]]:
        well: list[str] = []
        sick: list[str] = []
        for m in order:
            claim = not well
            (well if self.health.available(m, now, claim=claim) else sick).append(m)
        return well + sick, sick

    async def _reserve(
        self,
        order: list[str],
        route: RouteConfig | None,
        req: PolicyRequest,
        now: datetime,
        explicit: bool,
    ) -> tuple[list[str], tuple[Reservation, ...], float, str | None]:
        slots = self.budgets.slots(req.key_id, route.name if route else None, now)
        if not slots:
            return order, (), 0.0, None
        near = await self.budgets.near_limit(slots)
        tries = [order[0]]
        if not explicit:
            pool = list(order)
            if route is not None:
                # The route's own candidates are step-down targets even when
                # the rules chose the default model.
                pool += [m for m in route.candidates if m not in pool]
            top = self._price(order[0])
            # Step down: the next cheaper model first, then cheaper still.
            cheaper = sorted(
                (m for m in pool if self._price(m) < top), key=lambda m: -self._price(m)
            )
            tries = cheaper if near and cheaper else [order[0], *cheaper]
        refusals: list[str] = []
        for m in tries:
            own = self._worst(m, req)
            # Reserve enough for the dearest fallback the budget can hold, so
            # a failover never spends more than was reserved; fallbacks
            # dearer than the reservation are dropped.
            levels = sorted(
                {w for x in order if (w := self._worst(x, req)) > own}, reverse=True
            )
            for amount in [*levels, own]:
                held, refused = await self.budgets.reserve(slots, amount)
                if held:
                    break
                refusals.append(refused or "")
            if not held:
                continue
            rest = [x for x in order if x != m and self._worst(x, req) <= amount]
            step = None
            if m != order[0]:
                step = f"budget:step-down={','.join(near or refusals[:1])}"
            return [m, *rest], held, amount, step
        refused = refusals[0]
        slot = next(s for s in slots if s.config.name == refused)
        raise ClientError(
            f'The budget "{slot.config.name}" ({_PERIOD[slot.config.period]} limit '
            f"${slot.config.limit_usd:.2f}) has no room for this request; try "
            "again in the next period or ask for a higher limit.",
            status=429,
            code="budget_exceeded",
            type="insufficient_quota",
        )

    # -- after the call ---------------------------------------------------

    async def record(self, decision: RoutingDecision, outcome: Outcome) -> None:
        """Feed the outcome of a decided request into health, A/B statistics,
        budgets (settling the reservation), session pins and feedback."""
        stored = self.record_now(decision, outcome)
        if stored is not None:
            await stored

    def record_now(
        self, decision: RoutingDecision, outcome: Outcome
    ) -> Coroutine[Any, Any, None] | None:
        """``record`` without a task when nothing needs the state store: health
        and feedback are noted here (no I/O: feedback rows are queued for the
        book's writer thread); the coroutine returned, if any, settles budgets,
        A/B statistics and session pins and must be awaited."""
        now = self.clock.now().timestamp()
        for m in outcome.failed:
            self.health.record(m, False, 0.0, now)
        if outcome.model is not None:
            ok = outcome.upstream_ok
            self.health.record(outcome.model, ok, outcome.latency_ms, now)

        t = decision.trace
        if t is None:
            return None
        req = t.request
        if self.feedback is not None and req.request_id and outcome.model:
            self.feedback.remember_later(
                req.request_id,
                req.key_id,
                req.principal,
                decision.route,
                outcome.model,
                req.text if self.config.policies.feedback.store_prompts else "",
                now,
            )
        tried = {*outcome.failed, outcome.model}
        # An arm counts only when its model was called (a capability or
        # health skip is not the candidate's failure).
        ab = t.ab is not None and t.ab.model in tried
        if not t.reservations and not ab and t.session_key is None:
            return None
        return self._record_stored(decision, outcome, ab)

    async def _record_stored(
        self, decision: RoutingDecision, outcome: Outcome, ab: bool
    ) -> None:
        t = decision.trace
        assert t is not None
        if t.reservations:
            await self.budgets.settle(t.reservations, outcome.cost_usd)
        if ab and t.ab is not None:
            ok = outcome.upstream_ok and outcome.model == t.ab.model
            await self.ab.record(
                t.ab.test, t.ab.arm, ok, outcome.latency_ms, outcome.cost_usd
            )
        if t.session_key is not None:
            await self.sessions.record(t.session_key, outcome, decision.candidates)

    async def close(self) -> None:
        """Finish background work and close the feedback book (the gateway
        calls this when it stops or a reload replaces the engine)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.feedback is not None:
            self.feedback.close()

    async def release(self, decision: RoutingDecision) -> None:
        """Give back the budget reservation of a request that never went out."""
        if decision.trace is not None and decision.trace.reservations:
            await self.budgets.release(decision.trace.reservations)

    async def rate(
        self, request_id: str, rating: Any, key_id: str | None = None
    ) -> bool:
        """Record a rating for a remembered request (``POST /v1/feedback``);
        False when ``key_id`` made no request with that id. Raises
        ``ClientError`` for a bad rating."""
        if self.feedback is None:
            raise ClientError("Feedback is disabled in this gateway.", status=404)
        now = self.clock.now().timestamp()
        return await asyncio.to_thread(
            self.feedback.rate, request_id, rating, now, key_id
        )

    async def stats(self) -> dict[str, Any]:
        """A/B statistics per test and arm (see ``ABSplitter.stats``)."""
        return await self.ab.stats()

    # -- helpers for the gateway -----------------------------------------

    def quality(self, route: RouteConfig, model: str) -> float:
        """The model's quality on ``route``: the configured prior, updated by
        feedback (Bayesian average, ``policy/feedback.py``)."""
        prior = route.quality.get(model, self._model(model).quality)
        if self.feedback is None:
            return prior
        k = self.config.policies.feedback.prior_strength
        return self.feedback.quality(route.name, model, prior, k)

    def provider_params(self, decision: RoutingDecision, model: str) -> dict[str, Any]:
        """Body parameters for ``model`` expressing the route's reasoning
        setting (``reasoning_effort`` or Anthropic ``thinking``)."""
        route = self.config.route(decision.route) if decision.route else None
        max_tokens = decision.trace.request.max_tokens if decision.trace else None
        return reasoning_params(self._model(model), route_effort(route), max_tokens)

    def prepare_messages(
        self, model: str, messages: Sequence[Mapping[str, Any]], max_tokens: int | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """``messages`` fitted to ``model``'s window by the extractive trim
        (``policy/context.py``), and whether anything was condensed. Call it
        per attempt: a fallback model may have a smaller window."""
        m = self._model(model)
        budget = m.context_window - output_reserve(m, max_tokens)
        keep = self.config.policies.context.keep_last_messages
        out, dropped = trim_messages(messages, max(1, budget), keep)
        changed = dropped > 0 or out != [dict(x) for x in messages]
        return out, changed

    async def condense_messages(
        self,
        decision: RoutingDecision,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int | None,
        summarise: Summariser | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Like ``prepare_messages``, but dropped turns are summarised by the
        route's ``summariser`` model through ``summarise`` when both are set
        (the gateway supplies ``summarise``: it knows how to call a model)."""
        m = self._model(model)
        route = self.config.route(decision.route) if decision.route else None
        budget = max(1, m.context_window - output_reserve(m, max_tokens))
        keep = self.config.policies.context.keep_last_messages
        out, dropped = await condense_messages(
            messages, budget, keep, summarise, route.summariser if route else None
        )
        return out, dropped > 0

    def min_prompt_tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """The prompt tokens left after the fullest trim (``trim_floor``)."""
        return trim_floor(messages, self.config.policies.context.keep_last_messages)

    def _model(self, name: str) -> ModelConfig:
        return self._models[name]

    def _price(self, name: str) -> float:
        return blended_price(self._model(name))

    def _worst(self, name: str, req: PolicyRequest) -> float:
        return worst_case_cost(self._model(name), req.prompt_tokens, req.max_tokens)

    def with_rule(self, decision: RoutingDecision, rule: str) -> RoutingDecision:
        """``decision`` with ``rule`` appended (for gateway-side rules)."""
        return replace(decision, rule=f"{decision.rule}>{rule}")


_PERIOD = {"day": "daily", "month": "monthly"}


# Up to this many characters the exact count is quicker than a thread hop.
_INLINE_COUNT = 4_000


def _front(order: list[str], model: str) -> list[str]:
    return [model, *[m for m in order if m != model]]
