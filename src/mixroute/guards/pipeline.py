"""``Guards``: every guard the gateway runs on a request, built once from config.

The request path calls it in this order:

1. ``authenticate(authorization)``: the client key (401), its budget (429);
2. ``check(body, size)``: request shape limits (400/413);
3. ``admit(key, prompt_tokens)``: requests and tokens per minute (429);
4. ``scan(body)``: PII types and the jailbreak verdict (CPU-bound: run it on a
   worker thread, alongside classification);
5. ``enforce(scan, route, body)``: the route's policies. Raises a 400 for
   ``block``; returns the body to send upstream (redacted for ``redact``), a
   restorer, whether only ``local: true`` models may answer, and the flags for
   the ``x-mixroute-guard`` header;
6. ``settle(key, completion_tokens, cost_usd)`` once the answer is known.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mixroute.config.schema import MixrouteConfig, ModelConfig
from mixroute.errors import ClientError, ConfigError
from mixroute.guards.auth import Authenticator, check_route
from mixroute.guards.jailbreak import Embed, JailbreakDetector, JailbreakVerdict
from mixroute.guards.limits import check_body_size, check_limits
from mixroute.guards.pii import PiiDetector, Redactor
from mixroute.guards.ratelimit import BudgetGuard, Counters, RateLimiter
from mixroute.state.keys import ClientKey

log = logging.getLogger("mixroute.guards")
GUARD_HEADER = "x-mixroute-guard"


@dataclass(frozen=True)
class GuardScan:
    """What the scan found: PII types (never values) and the jailbreak verdict."""

    pii_types: tuple[str, ...] = ()
    jailbreak: JailbreakVerdict | None = None


@dataclass
class GuardOutcome:
    """The result of the route's policies for one request."""

    body: dict[str, Any]
    redactor: Redactor | None = None
    local_only: bool = False
    flags: list[str] = field(default_factory=list)

    def header(self) -> tuple[str, str] | None:
        """The ``x-mixroute-guard`` header, when any guard acted or flagged."""
        return (GUARD_HEADER, ",".join(self.flags)) if self.flags else None

    def restore(self, text: str) -> str:
        """``text`` with this request's PII placeholders put back (if enabled)."""
        return self.redactor.restore(text) if self.redactor is not None else text


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            p["text"]
            for p in content
            if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        ]
    return []


def _latest_turn(messages: Sequence[Any]) -> list[str]:
    """Text of the messages after the last assistant turn (user, tool results).

    The jailbreak guard judges what the client adds now, so one bad turn in a
    long history does not flag every later request.
    """
    out: list[str] = []
    for m in reversed(messages):
        if not isinstance(m, Mapping):
            continue
        if m.get("role") == "assistant":
            break
        if m.get("role") in ("user", "tool", "function"):
            out[:0] = _texts(m.get("content"))
    return out


def _all_text(body: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, Mapping):
                texts += _texts(m.get("content"))
    prompt = body.get("prompt")
    texts += _texts(prompt) if isinstance(prompt, str) else []
    if isinstance(prompt, list):
        texts += [p for p in prompt if isinstance(p, str)]
    return texts


def _redact_body(body: Mapping[str, Any], redactor: Redactor) -> dict[str, Any]:
    out = copy.deepcopy(dict(body))
    messages = out.get("messages")
    if isinstance(messages, list):
        for m in messages:
            if not isinstance(m, dict):
                continue
            content = m.get("content")
            if isinstance(content, str):
                m["content"] = redactor.redact(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        part["text"] = redactor.redact(part["text"])
    prompt = out.get("prompt")
    if isinstance(prompt, str):
        out["prompt"] = redactor.redact(prompt)
    elif isinstance(prompt, list):
        out["prompt"] = [
            redactor.redact(p) if isinstance(p, str) else p for p in prompt
        ]
    return out


class Guards:
    """Auth, limits, rate limits, PII and jailbreak guards for one config."""

    def __init__(
        self,
        config: MixrouteConfig,
        *,
        authenticator: Authenticator | None = None,
        limiter: RateLimiter | None = None,
        budgets: BudgetGuard | None = None,
        jailbreak: JailbreakDetector | None = None,
    ) -> None:
        self.config = config
        g = config.guards
        self.authenticator = authenticator
        self.limiter = limiter or RateLimiter(defaults=config.limits)
        self.budgets = budgets or BudgetGuard()
        self.pii = PiiDetector(g.pii_types)
        self.jailbreak = jailbreak or JailbreakDetector(threshold=g.jailbreak_threshold)
        self._pii_policy = {r.name: r.guards.pii or g.pii for r in config.routes}
        self._jb_policy = {
            r.name: r.guards.jailbreak or g.jailbreak for r in config.routes
        }
        self.scan_pii = any(p != "allow" for p in [g.pii, *self._pii_policy.values()])
        self.scan_jailbreak = any(
            p != "allow" for p in [g.jailbreak, *self._jb_policy.values()]
        )
        # Whether any route's policy differs from the global one: only then
        # must an ``auto`` request be classified before its policy is known.
        self.per_route = any(
            (r.guards.pii or g.pii) != g.pii
            or (r.guards.jailbreak or g.jailbreak) != g.jailbreak
            for r in config.routes
        )
        self.local_models = [m for m in config.models if m.local]
        wants_local = [
            name for name, p in self._pii_policy.items() if p == "route_local"
        ]
        if (wants_local or g.pii == "route_local") and not self.local_models:
            raise ConfigError(
                [
                    "guards.pii: route_local needs at least one model with "
                    f"local: true (asked for by: {', '.join(wants_local) or 'guards'})"
                ]
            )

    @classmethod
    def from_config(
        cls,
        config: MixrouteConfig,
        *,
        store: Counters | None = None,
        embed: Embed | None = None,
    ) -> Guards:
        """Build every guard; ``embed`` (the classifier's encoder) enables the
        jailbreak head, ``store`` shares rate limits and budgets across replicas."""
        authenticator = None
        if config.auth.mode != "off":
            authenticator = Authenticator.from_config(config)
        jailbreak = None
        if embed is not None:
            jailbreak = JailbreakDetector.load(embed, config.guards.jailbreak_threshold)
        return cls(
            config,
            authenticator=authenticator,
            limiter=RateLimiter(store, defaults=config.limits),
            budgets=BudgetGuard(store),
            jailbreak=jailbreak,
        )

    # 1-3: who is asking, and may they ---------------------------------------

    async def authenticate(self, authorization: str | None) -> ClientKey | None:
        """The caller's key (``None`` when auth is off); raises 401 or 429."""
        if self.authenticator is None:
            return None
        key = await self.authenticator.authenticate(authorization)
        await self.budgets.check(key)
        return key

    def check(self, body: Mapping[str, Any], size: int) -> None:
        """Request shape limits; raises a 400 or 413 naming the limit."""
        check_body_size(size, self.config.limits, self.config.server.max_body_bytes)
        check_limits(body if isinstance(body, dict) else dict(body), self.config.limits)

    async def admit(self, key: ClientKey | None, prompt_tokens: int) -> None:
        await self.limiter.admit(key, prompt_tokens)

    # 4-5: what is in the prompt, and what the route allows -------------------

    def scan(self, body: Mapping[str, Any], head: bool = True) -> GuardScan:
        """PII types in every message and the jailbreak verdict on the new turn.

        ``head=False`` skips the jailbreak head (the encoder); a verdict it
        would have decided comes back ``pending`` (see ``JailbreakVerdict``)."""
        pii: tuple[str, ...] = ()
        if self.scan_pii:
            found: set[str] = set()
            for text in _all_text(body):
                found |= self.pii.types_in(text)
            pii = tuple(sorted(found))
        verdict = None
        if self.scan_jailbreak:
            messages = body.get("messages")
            if isinstance(messages, list):
                turn = _latest_turn(messages)
            else:
                turn = _all_text(body)
            if turn:
                verdict = self.jailbreak.score("\n".join(turn), head)
        return GuardScan(pii, verdict)

    def enforce(
        self,
        scan: GuardScan,
        route: str | None,
        body: Mapping[str, Any],
        *,
        key: ClientKey | None = None,
        request_id: str = "-",
    ) -> GuardOutcome:
        """Apply the route's policies (global ones when ``route`` is ``None``)."""
        g = self.config.guards
        if route is not None:
            check_route(key, route)
        pii_policy = self._pii_policy.get(route or "", g.pii)
        jb_policy = self._jb_policy.get(route or "", g.jailbreak)
        # The same object when no guard changes it: the middleware then hands
        # the client's bytes on without encoding them again.
        outcome = GuardOutcome(body if isinstance(body, dict) else dict(body))

        v = scan.jailbreak
        if v is not None and v.attack and jb_policy != "allow":
            why = f"rule {v.pattern}" if v.pattern else f"score {v.probability:.2f}"
            log.warning(
                "request %s: possible jailbreak or prompt injection (%s, route %s, "
                "policy %s)",
                request_id,
                why,
                route or "-",
                jb_policy,
            )
            if jb_policy == "block":
                raise ClientError(
                    f"The request was refused by the prompt-injection guard ({why}).",
                    code="prompt_blocked",
                    param="messages",
                )
            outcome.flags.append("jailbreak")

        if scan.pii_types and pii_policy != "allow":
            types = ", ".join(scan.pii_types)
            if pii_policy == "block":
                raise ClientError(
                    f"The request contains personal or secret data ({types}); this "
                    "route does not accept it. Remove it and try again.",
                    code="pii_blocked",
                    param="messages",
                )
            if pii_policy == "redact":
                redactor = Redactor(self.pii)
                outcome.body = _redact_body(body, redactor)
                outcome.redactor = redactor if g.restore_pii else None
                outcome.flags.append("pii-redacted")
            elif pii_policy == "route_local":
                outcome.local_only = True
                outcome.flags.append("pii-local")
            log.info(
                "request %s: PII found (%s); policy %s", request_id, types, pii_policy
            )
        return outcome

    def local_candidates(self, candidates: Sequence[ModelConfig]) -> list[ModelConfig]:
        """The ``local: true`` candidates, else every local model in config order."""
        local = [m for m in candidates if m.local]
        return local or list(self.local_models)

    # 6: after the answer -----------------------------------------------------

    async def settle(
        self, key: ClientKey | None, completion_tokens: int, cost_usd: float
    ) -> None:
        await self.limiter.record_tokens(key, completion_tokens)
        await self.budgets.record(key, cost_usd)
