"""A/B splits with sticky arms, stepped roll-outs and an automatic halt.

A user (``PolicyRequest.principal``: the ``user`` field within the key, else
the key) is assigned to an arm by a hash of the test name and the user id:
``bucket = sha256(name/user) mod 10000``; the candidate arm gets buckets below
``weight × 100``. Raising the weight only adds buckets, so a user who was on
the candidate stays there while a roll-out steps up. Requests with no user id
hash their request id (no stickiness possible).

Per-arm counters live in the store (hash ``ab:<name>:<arm>``: ``n``,
``errors``, ``latency_ms``, ``cost_usd``). After ``halt.min_samples`` candidate
calls, an error rate above ``halt.max_error_rate`` or a mean latency above
``halt.max_latency_ms`` halts the test: the flag ``ab:<name>:halted`` is set
(with the reason) and every user goes to production until the flag is
cleared with ``resume``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from mixroute.config.policies import ABTestConfig
from mixroute.policy.store import PolicyStore

Arm = Literal["production", "candidate"]


@dataclass(frozen=True)
class ABAssignment:
    test: str
    arm: Arm
    model: str


def bucket(test: str, user: str) -> int:
    """The user's bucket 0..9999 in ``test``; stable across processes."""
    digest = hashlib.sha256(f"{test}/{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def current_weight(test: ABTestConfig, now: datetime) -> float:
    """Percent of users on the candidate at ``now`` (the schedule's last step
    at or before ``now``, else the base weight)."""
    weight = test.weight
    for step in sorted(test.schedule, key=lambda s: s.at):
        if step.at <= now:
            weight = step.weight
    return weight


def arm_for(test: ABTestConfig, user: str, now: datetime) -> Arm:
    """The arm of ``user`` at ``now`` (ignoring a halt)."""
    cut = round(current_weight(test, now) * 100)
    return "candidate" if bucket(test.name, user) < cut else "production"


class ABSplitter:
    """Assigns arms, records outcomes and halts failing candidates."""

    def __init__(self, tests: list[ABTestConfig], store: PolicyStore) -> None:
        self.tests = tests
        self.store = store

    def test_for(self, route: str | None, model: str) -> ABTestConfig | None:
        """The first test on ``route`` (or on all routes) whose production
        model is ``model``."""
        for t in self.tests:
            if t.production == model and (t.route is None or t.route == route):
                return t
        return None

    def by_name(self, name: str) -> ABTestConfig | None:
        """The test called ``name``, if configured."""
        return next((t for t in self.tests if t.name == name), None)

    async def assign(
        self, test: ABTestConfig, user: str, now: datetime
    ) -> ABAssignment:
        """The user's arm, production whenever the test is halted."""
        if await self.store.get(f"ab:{test.name}:halted") is not None:
            return ABAssignment(test.name, "production", test.production)
        arm = arm_for(test, user, now)
        model = test.candidate if arm == "candidate" else test.production
        return ABAssignment(test.name, arm, model)

    async def record(
        self, test_name: str, arm: Arm, ok: bool, latency_ms: float, cost_usd: float
    ) -> None:
        """Count one call on an arm; may halt the test."""
        key = f"ab:{test_name}:{arm}"
        n = await self.store.hincr(key, "n", 1)
        if not ok:
            await self.store.hincr(key, "errors", 1)
        await self.store.hincr(key, "latency_ms", latency_ms)
        await self.store.hincr(key, "cost_usd", cost_usd)
        test = self.by_name(test_name)
        if arm == "candidate" and test is not None and n >= test.halt.min_samples:
            reason = _breach(test, await self.store.hgetall(key))
            if reason:
                await self.store.set(f"ab:{test_name}:halted", reason)

    async def resume(self, test_name: str) -> None:
        """Clear a halt (an operator's decision after fixing the candidate)."""
        await self.store.delete(f"ab:{test_name}:halted")

    async def stats(self) -> dict[str, dict[str, Any]]:
        """Per test: halted reason (or None), weight, and per arm n, errors,
        error_rate, mean latency_ms and total cost_usd."""
        out: dict[str, dict[str, Any]] = {}
        for t in self.tests:
            halted = await self.store.get(f"ab:{t.name}:halted")
            arms: dict[str, dict[str, float]] = {}
            for arm in ("production", "candidate"):
                h = await self.store.hgetall(f"ab:{t.name}:{arm}")
                n = h.get("n", 0.0)
                arms[arm] = {
                    "n": n,
                    "errors": h.get("errors", 0.0),
                    "error_rate": h.get("errors", 0.0) / n if n else 0.0,
                    "latency_ms": h.get("latency_ms", 0.0) / n if n else 0.0,
                    "cost_usd": h.get("cost_usd", 0.0),
                }
            out[t.name] = {"halted": halted or None, "arms": arms}
        return out


def _breach(test: ABTestConfig, h: dict[str, float]) -> str | None:
    n = h.get("n", 0.0)
    if not n:
        return None
    rate = h.get("errors", 0.0) / n
    if rate > test.halt.max_error_rate:
        return f"error rate {rate:.2f} > {test.halt.max_error_rate}"
    mean = h.get("latency_ms", 0.0) / n
    if test.halt.max_latency_ms is not None and mean > test.halt.max_latency_ms:
        return f"mean latency {mean:.0f} ms > {test.halt.max_latency_ms:.0f} ms"
    return None
