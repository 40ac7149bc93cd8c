"""The routing decision and the seed policy that makes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from mixroute.classify.base import Classification, Tier
from mixroute.config.schema import MixrouteConfig
from mixroute.policy.ab import ABAssignment
from mixroute.policy.budgets import Reservation
from mixroute.policy.request import PolicyRequest

# Distinct candidate orders whose chains are kept (the config has few models).
_MAX_CHAINS = 4096


@dataclass(frozen=True)
class PolicyTrace:
    """What the policy engine needs again when the call's outcome comes back."""

    request: PolicyRequest
    ab: ABAssignment | None = None
    reservations: tuple[Reservation, ...] = ()
    reserved_usd: float = 0.0
    session_key: str | None = None
    difficulty: float | None = None


@dataclass(frozen=True)
class RoutingDecision:
    """The chosen model, its fallbacks in order, and the rule that chose it."""

    model: str
    candidates: tuple[str, ...]
    route: str | None
    rule: str
    classification: Classification | None = None
    cache_key: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    trace: PolicyTrace | None = None

    @property
    def confidence(self) -> float | None:
        return None if self.classification is None else self.classification.confidence

    @property
    def context_trimmed(self) -> bool:
        """Whether the chosen model's window cannot hold the whole history, so
        older turns are condensed (the gateway then sets
        ``x-mixroute-context: trimmed``)."""
        return "context:trimmed" in self.notes


class SeedPolicy:
    """The seed's threshold rule, with tier candidates and fallback chains.

    - confidence above ``thresholds.confident`` → the route's first candidate
      (or its tier candidates for the prompt's complexity tier), rule
      ``route:confident``;
    - above ``thresholds.safe`` → the route's safe fallback, rule ``route:safe``;
    - otherwise → ``policies.default_model``, rule ``default:low-confidence``.

    Fallbacks follow: the rest of the route's candidates, then the model's
    configured fallback chain, then the default model, without repeats.
    """

    def __init__(self, config: MixrouteConfig) -> None:
        self.config = config
        # The config never changes under a policy (a reload builds a new one),
        # so each chain and each explicit decision is worked out once.
        self._chains: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._explicit: dict[str, RoutingDecision] = {}
        self._picks: dict[tuple[str, int, Tier], tuple[str, tuple[str, ...], str]] = {}

    def decide(self, c: Classification) -> RoutingDecision:
        route, chain, rule = self.pick(c)
        return RoutingDecision(chain[0], chain, route, rule, c)

    def pick(self, c: Classification) -> tuple[str, tuple[str, ...], str]:
        """(route name, candidate chain, rule) for ``c``: the same for every
        classification with its route, confidence band and tier, so each is
        worked out once per config."""
        th = self.config.classifier.thresholds
        band = 2 if c.confidence > th.confident else 1 if c.confidence > th.safe else 0
        key = (c.route, band, c.tier)
        known = self._picks.get(key)
        if known is None:
            known = self._pick(c.route, band, c.tier)
            if len(self._picks) < _MAX_CHAINS:
                self._picks[key] = known
        return known

    def _pick(
        self, route_name: str, band: int, tier: Tier
    ) -> tuple[str, tuple[str, ...], str]:
        route = self.config.route(route_name)
        if band == 2:
            first = list(route.tiers.get(tier, [])) + list(route.candidates)
            rule = "route:confident"
            if route.tiers.get(tier):
                rule = f"route:confident:tier={tier}"
        elif band == 1:
            safe = route.safe_fallback or route.candidates[-1]
            first = [safe, *route.candidates]
            rule = "route:safe"
        else:
            first = [self.config.policies.default_model]
            rule = "default:low-confidence"
        return route.name, tuple(self.chain(first)), rule

    def for_route(self, route_name: str) -> RoutingDecision:
        """A decision for an explicit ``auto:<route>`` request (no classification)."""
        known = self._explicit.get(f"auto:{route_name}")
        if known is None:
            route = self.config.route(route_name)
            chain = self.chain(list(route.candidates))
            known = RoutingDecision(
                chain[0], tuple(chain), route.name, "explicit:route"
            )
            self._explicit[f"auto:{route_name}"] = known
        return known

    def for_model(self, model_name: str) -> RoutingDecision:
        """A decision for a request that names a concrete model."""
        known = self._explicit.get(model_name)
        if known is None:
            chain = self.chain([model_name])
            known = RoutingDecision(model_name, tuple(chain), None, "explicit:model")
            self._explicit[model_name] = known
        return known

    def chain(self, first: list[str]) -> list[str]:
        """``first``, then each one's fallbacks followed transitively (breadth
        first; the config forbids cycles), then the default model."""
        key = tuple(first)
        known = self._chains.get(key)
        if known is None:
            known = tuple(self._chain(first))
            if len(self._chains) < _MAX_CHAINS:  # orders of a few config names
                self._chains[key] = known
        return list(known)

    def _chain(self, first: list[str]) -> list[str]:
        out = _unique(first)
        i = 0
        while i < len(out):
            for name in self.config.policies.fallbacks.get(out[i], []):
                if name not in out:
                    out.append(name)
            i += 1
        if self.config.policies.default_model not in out:
            out.append(self.config.policies.default_model)
        return out


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
