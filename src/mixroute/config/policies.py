"""The ``policies:`` section's sub-schemas: A/B splits, sessions, budgets, time
rules, health, feedback, preferences and context transfer.

Kept apart from ``schema.py`` so the policy layer can grow without touching
the rest of the config; ``schema.PoliciesConfig`` composes these. Every field
has a default, so a config that does not mention a policy keeps the seed's
behaviour.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from mixroute.config.schema import MixrouteConfig

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ABStep(_Strict):
    """From ``at`` on, the candidate arm gets ``weight`` percent of users."""

    at: datetime
    weight: float = Field(ge=0, le=100)

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError(f"schedule time {v.isoformat()} needs a UTC offset or Z")
        return v


class ABHalt(_Strict):
    """Limits on the candidate arm; crossing one sends everyone to production."""

    max_error_rate: float = Field(0.2, ge=0, le=1)
    max_latency_ms: float | None = Field(None, gt=0, description="mean latency")
    min_samples: int = Field(20, ge=1, description="candidate calls before judging")


class ABTestConfig(_Strict):
    """Split a route's traffic between a production and a candidate model."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    route: str | None = Field(None, description="route it applies to; null: all")
    production: str
    candidate: str
    weight: float = Field(10.0, ge=0, le=100, description="percent to the candidate")
    schedule: list[ABStep] = Field(
        default_factory=list, description="later weights, applied at their times"
    )
    halt: ABHalt = Field(default_factory=ABHalt)


class SessionsConfig(_Strict):
    """Conversation stickiness: pin a conversation to its first-turn model."""

    enabled: bool = True
    ttl_s: float = Field(3600.0, gt=0)


class BudgetConfig(_Strict):
    """A spending limit in USD per day or month, for a key, a route or all."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    scope: Literal["key", "route", "global"] = "key"
    match: str = Field(
        "*", description="the key id or route name; '*' gives each its own budget"
    )
    period: Literal["day", "month"] = "day"
    limit_usd: float = Field(gt=0)
    step_down_at: float = Field(
        0.8,
        ge=0,
        le=1,
        description="share of the limit after which cheaper candidates are preferred",
    )


class TimeRuleConfig(_Strict):
    """During a time range, move some models ahead of (or behind) the others."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    days: list[Weekday] | Literal["all", "weekday", "weekend"] = "all"
    start: str = Field("00:00", description="HH:MM local time, inclusive")
    end: str = Field("24:00", description="HH:MM local time, exclusive; may wrap")
    routes: list[str] | None = Field(None, description="null: every route")
    prefer: list[str] = Field(default_factory=list)
    prefer_local: bool = Field(False, description="local models go first")
    avoid: list[str] = Field(default_factory=list)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if v != "24:00" and not _HHMM.match(v):
            raise ValueError(f'time "{v}" is not HH:MM (00:00 to 24:00)')
        return v


class HealthConfig(_Strict):
    """When a model counts as unhealthy and is tried only after healthy ones."""

    enabled: bool = True
    max_error_rate: float = Field(0.5, ge=0, le=1, description="EWMA of failures")
    max_latency_ms: float | None = Field(None, gt=0, description="EWMA of latency")
    min_samples: int = Field(5, ge=1)
    alpha: float = Field(0.2, gt=0, le=1, description="EWMA weight of a new sample")
    cooldown_s: float = Field(30.0, gt=0, description="time before a probe")


class FeedbackConfig(_Strict):
    """Quality learned from ratings: a Beta prior from the configured quality."""

    enabled: bool = True
    path: str | None = Field(
        None,
        description="SQLite file; null: mixroute-feedback.sqlite beside the usage "
        "ledger (in memory when the ledger is); ':memory:' keeps nothing",
    )
    prior_strength: float = Field(
        10.0, gt=0, description="weight of the configured quality, in ratings"
    )
    refresh_s: float = Field(
        30.0, ge=0, description="seconds between recomputing learned scores"
    )
    retain_days: float = Field(
        30.0, gt=0, description="unrated requests are forgotten after this"
    )
    store_prompts: bool = Field(
        True, description="keep prompt text for `mixroute train --feedback`"
    )


class PreferencesConfig(_Strict):
    """Steer a user away from a model they keep rating low on a route."""

    enabled: bool = True
    min_ratings: int = Field(3, ge=1)
    below: float = Field(0.4, ge=0, le=1, description="user's mean rating bar")
    max_cost_factor: float = Field(
        3.0,
        ge=1,
        description="the replacement may cost at most this many times "
        "the avoided model (unless the route sets max_price_per_mtok)",
    )


class ContextConfig(_Strict):
    """Condensing history that does not fit the chosen model's window."""

    trim: bool = True
    keep_last_messages: int = Field(
        2, ge=1, description="latest messages always kept (besides system)"
    )


def check_timezone(v: str) -> str:
    """``v`` if it names an IANA time zone, else a ValueError."""
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'time zone "{v}" is not an IANA zone name') from None
    return v


class PolicyRules(_Strict):
    """Fields shared by ``policies:``; validated as one block."""

    cost_quality: float | None = Field(
        None, ge=0, le=1, description="0 cheapest .. 1 best; null: seed order"
    )
    target_strong_share: float | None = Field(
        None, ge=0, le=1, description="instead of cost_quality: share of strong calls"
    )
    timezone: str = "UTC"
    ab_tests: list[ABTestConfig] = Field(default_factory=list)
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    time_rules: list[TimeRuleConfig] = Field(default_factory=list)
    health: HealthConfig = Field(default_factory=HealthConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    preferences: PreferencesConfig = Field(default_factory=PreferencesConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone(v)

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyRules:
        for kind, names in (
            ("ab_tests", [t.name for t in self.ab_tests]),
            ("budgets", [b.name for b in self.budgets]),
            ("time_rules", [r.name for r in self.time_rules]),
        ):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{kind} names repeat: {sorted(dup)}")
        return self


def check_policy_references(config: MixrouteConfig) -> list[str]:
    """One sentence per policy setting that names an unknown model or route."""
    models = set(config.model_names)
    routes = set(config.route_names)
    p = config.policies
    problems: list[str] = []

    def need(kind: str, path: str, name: str | None) -> None:
        known = models if kind == "model" else routes
        if name is not None and name not in known:
            problems.append(
                f'{path}: {kind} "{name}" is not defined; {kind}s: '
                f"{', '.join(sorted(known))}"
            )

    for i, t in enumerate(p.ab_tests):
        need("model", f"policies.ab_tests[{i}].production", t.production)
        need("model", f"policies.ab_tests[{i}].candidate", t.candidate)
        need("route", f"policies.ab_tests[{i}].route", t.route)
    for i, r in enumerate(p.time_rules):
        for j, m in enumerate(r.prefer):
            need("model", f"policies.time_rules[{i}].prefer[{j}]", m)
        for j, m in enumerate(r.avoid):
            need("model", f"policies.time_rules[{i}].avoid[{j}]", m)
        for j, name in enumerate(r.routes or []):
            need("route", f"policies.time_rules[{i}].routes[{j}]", name)
    for i, b in enumerate(p.budgets):
        if b.scope == "route" and b.match != "*":
            need("route", f"policies.budgets[{i}].match", b.match)
    for i, route in enumerate(config.routes):
        for m in route.quality:
            need("model", f"routes[{i}].quality", m)
        need("model", f"routes[{i}].summariser", route.summariser)
    return problems
