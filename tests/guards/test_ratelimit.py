"""Per-key requests/tokens per minute and spend budgets, on the real state store."""

from __future__ import annotations

import pytest

from mixroute.config.schema import LimitsConfig
from mixroute.errors import ClientError
from mixroute.guards.ratelimit import BudgetGuard, RateLimiter
from mixroute.state.keys import ClientKey
from mixroute.state.memory import MemoryStore


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key(**kw: object) -> ClientKey:
    return ClientKey(key_id="abcd1234", name="team-a", created_at=0.0, **kw)  # type: ignore[arg-type]


async def test_rpm_refuses_the_next_request_with_retry_after() -> None:
    clock = Clock(6000.0)
    limiter = RateLimiter(MemoryStore(clock))
    key = _key(rpm=3)
    for _ in range(3):
        await limiter.admit(key)
    clock.now += 10
    with pytest.raises(ClientError) as info:
        await limiter.admit(key)
    err = info.value
    assert err.status == 429
    assert "requests per minute (rpm) is 3" in err.message
    assert err.headers["retry-after"] == "50"
    assert err.type == "rate_limit_error"
    assert err.body()["error"]["code"] == "rate_limit_exceeded"

    clock.now += 51  # the window has ended
    await limiter.admit(key)


async def test_tpm_counts_prompt_and_completion_tokens() -> None:
    clock = Clock(6000.0)
    limiter = RateLimiter(MemoryStore(clock))
    key = _key(tpm=1000)
    await limiter.admit(key, prompt_tokens=400)
    await limiter.record_tokens(key, 500)
    with pytest.raises(ClientError) as info:
        await limiter.admit(key, prompt_tokens=200)
    assert "tokens per minute (tpm) is 1000" in info.value.message
    await limiter.admit(key, prompt_tokens=100)
    with pytest.raises(ClientError):
        await limiter.admit(key, prompt_tokens=1)


async def test_defaults_apply_to_keys_without_their_own_limits() -> None:
    limiter = RateLimiter(MemoryStore(), defaults=LimitsConfig(rpm=1))
    await limiter.admit(_key())
    with pytest.raises(ClientError):
        await limiter.admit(_key())
    # Auth off: no key, no limit.
    for _ in range(5):
        await limiter.admit(None)


async def test_keys_are_limited_independently() -> None:
    limiter = RateLimiter(MemoryStore())
    a = _key(rpm=1)
    b = ClientKey(key_id="zzzz9999", name="team-b", created_at=0.0, rpm=1)
    await limiter.admit(a)
    await limiter.admit(b)
    with pytest.raises(ClientError, match="team-a"):
        await limiter.admit(a)


async def test_two_limiters_on_one_store_share_the_count() -> None:
    # Two replicas see one store (Redis in production; the same object here).
    store = MemoryStore()
    one, two = RateLimiter(store), RateLimiter(store)
    key = _key(rpm=2)
    await one.admit(key)
    await two.admit(key)
    with pytest.raises(ClientError):
        await one.admit(key)


async def test_budget_is_enforced_per_period_and_resets() -> None:
    clock = Clock(86400.0 * 100 + 3600)  # 01:00 UTC
    budget = BudgetGuard(MemoryStore(clock), clock=clock)
    key = _key(budget_usd=1.0, budget_period="day")
    await budget.check(key)
    await budget.record(key, 0.6)
    await budget.check(key)
    await budget.record(key, 0.5)
    with pytest.raises(ClientError) as info:
        await budget.check(key)
    err = info.value
    assert err.status == 429 and err.code == "budget_exceeded"
    assert "1.00 USD per day" in err.message
    assert err.headers["retry-after"] == str(23 * 3600)
    clock.now += 23 * 3600
    await budget.check(key)
