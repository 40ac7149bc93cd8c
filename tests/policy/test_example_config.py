"""The shipped example with every policy at once loads and composes rules."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from zoneinfo import ZoneInfo

from policy_helpers import classified, req

from mixroute.config import parse_config
from mixroute.policy import FakeClock, MemoryPolicyStore, Needs, PolicyEngine

BERLIN = ZoneInfo("Europe/Berlin")


def _engine(clock: FakeClock) -> PolicyEngine:
    text = (resources.files("mixroute.policy") / "example-policies.yaml").read_text()
    cfg = parse_config(text, env={"MIXROUTE_SMALL_BASE_URL": "http://127.0.0.1:1/v1"})
    raw = cfg.model_dump()
    raw["policies"]["feedback"]["path"] = ":memory:"
    cfg = type(cfg).model_validate(raw)
    return PolicyEngine(cfg, MemoryPolicyStore(clock), clock)


async def test_every_policy_in_one_config() -> None:
    clock = FakeClock(datetime(2026, 12, 15, 23, 30, tzinfo=BERLIN))  # a Tuesday
    engine = _engine(clock)
    # Night: the chat route prefers the local model; the rule says both steps.
    d = await engine.decide(classified("chat"), req(key_id="k", user="ann"))
    assert d.model == "local"
    assert d.rule == "route:confident>cost-quality:p=0.50>time:off-peak"
    # Tools rule the local model out; the budgets reserved the worst case.
    d = await engine.decide(
        classified("chat"), req(key_id="k", needs=Needs(tools=True))
    )
    assert "capability:skip=local" in d.rule and d.trace is not None
    assert {r.budget for r in d.trace.reservations} == {
        "per-key-daily",
        "everything-monthly",
    }
    # Math: cost-quality with the route's knob, reasoning for the provider.
    d = await engine.decide(classified("math", hard=0.05), req(max_tokens=4000))
    assert d.model == "small" and "cost-quality:p=0.05" in d.rule
    assert engine.provider_params(d, "claude")["thinking"]["type"] == "enabled"
    # The A/B test on chat's production model splits users ~50/50 by now.
    clock.set(datetime(2026, 12, 15, 12, 0, tzinfo=BERLIN))
    arms = set()
    for i in range(40):
        d = await engine.decide(classified("chat", hard=0.9), req(key_id=f"k{i}"))
        arms.add(d.rule.rsplit(">", 1)[-1])
    assert arms == {"ab:medium-v2:candidate", "ab:medium-v2:production"}
