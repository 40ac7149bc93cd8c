"""The seed threshold policy and fallback chains."""

from __future__ import annotations

import yaml

from mixroute.classify.base import Classification
from mixroute.config import default_config_text, load_config, parse_config
from mixroute.policy import SeedPolicy


def _c(route: str, confidence: float, tier: str = "medium") -> Classification:
    return Classification(route=route, confidence=confidence, tier=tier)  # type: ignore[arg-type]


def test_thresholds_pick_route_model_safe_fallback_or_default() -> None:
    policy = SeedPolicy(load_config(env={}))
    confident = policy.decide(_c("creative", 0.95))
    assert (confident.model, confident.rule) == ("small", "route:confident")
    safe = policy.decide(_c("creative", 0.8))
    assert (safe.model, safe.rule) == ("medium", "route:safe")
    unsure = policy.decide(_c("creative", 0.5))
    assert (unsure.model, unsure.rule) == ("large", "default:low-confidence")
    # Boundaries are strict: exactly 0.9 is not "above 0.9".
    assert policy.decide(_c("creative", 0.9)).rule == "route:safe"
    assert policy.decide(_c("creative", 0.7)).rule == "default:low-confidence"


def test_tier_candidates_come_first_when_confident() -> None:
    policy = SeedPolicy(load_config(env={}))
    d = policy.decide(_c("math", 0.99, tier="complex"))
    assert d.model == "large"
    assert d.rule == "route:confident:tier=complex"
    assert d.candidates[0] == "large" and "medium" in d.candidates


def test_fallbacks_are_followed_transitively_without_repeats() -> None:
    raw = yaml.safe_load(default_config_text())
    raw["policies"]["fallbacks"] = {"small": ["medium"], "medium": ["large"]}
    policy = SeedPolicy(parse_config(yaml.safe_dump(raw), env={}))
    d = policy.decide(_c("open_qa", 0.99))
    assert d.candidates == ("small", "medium", "large")
    assert len(set(d.candidates)) == len(d.candidates)


def test_explicit_route_and_model() -> None:
    policy = SeedPolicy(load_config(env={}))
    r = policy.for_route("code")
    assert (r.model, r.rule, r.route) == ("medium", "explicit:route", "code")
    m = policy.for_model("small")
    assert m.model == "small" and m.rule == "explicit:model"
    assert m.candidates[-1] == "large"
