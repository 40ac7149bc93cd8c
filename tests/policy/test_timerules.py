"""Time rules in a configured zone: ranges, wrap past midnight, weekends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from policy_helpers import classified, make_config, req

from mixroute.config.policies import TimeRuleConfig
from mixroute.errors import ConfigError
from mixroute.policy import FakeClock, PolicyEngine
from mixroute.policy.timerules import rule_active

BERLIN = ZoneInfo("Europe/Berlin")
OFF_PEAK = {"name": "off-peak", "start": "22:00", "end": "06:00", "prefer_local": True}
WEEKEND = {"name": "weekend", "days": "weekend", "avoid": ["small"]}


@pytest.mark.parametrize(
    ("when", "active"),
    [
        (datetime(2026, 1, 5, 21, 59), False),
        (datetime(2026, 1, 5, 22, 0), True),
        (datetime(2026, 1, 6, 5, 59), True),
        (datetime(2026, 1, 6, 6, 0), False),
    ],
)
def test_range_wraps_past_midnight(when: datetime, active: bool) -> None:
    rule = TimeRuleConfig.model_validate(OFF_PEAK)
    assert rule_active(rule, when.replace(tzinfo=BERLIN)) is active


def test_wrapped_range_tests_the_day_it_started() -> None:
    # Friday 23:00 → Saturday 02:00 belongs to Friday's night.
    rule = TimeRuleConfig.model_validate(dict(OFF_PEAK, days=["fri"]))
    assert rule_active(rule, datetime(2026, 1, 10, 2, 0, tzinfo=BERLIN))
    assert not rule_active(rule, datetime(2026, 1, 11, 2, 0, tzinfo=BERLIN))


async def test_off_peak_prefers_local_models_in_the_zone(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    c = classified("chat")
    cfg = make_config(
        timezone="Europe/Berlin",
        time_rules=[OFF_PEAK, WEEKEND],
        routes=[
            {"name": "math", "candidates": ["small", "medium", "large"]},
            {"name": "chat", "candidates": ["small", "medium", "local"]},
        ],
    )
    engine = engine_for(cfg)
    clock.set(datetime(2026, 1, 5, 12, 0, tzinfo=BERLIN))  # Monday noon
    assert (await engine.decide(c, req())).model == "small"
    clock.set(datetime(2026, 1, 5, 23, 0, tzinfo=BERLIN))  # 22:00 UTC
    night = await engine.decide(c, req())
    assert night.model == "local" and night.rule == "route:confident>time:off-peak"
    clock.set(datetime(2026, 1, 10, 12, 0, tzinfo=BERLIN))  # Saturday noon
    weekend = await engine.decide(c, req())
    assert weekend.candidates == ("medium", "local", "large", "small")
    assert weekend.rule.endswith("time:weekend")


def test_unknown_zone_and_models_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        make_config(timezone="Mars/Olympus")
    # `mixroute config check` and loading both name the bad reference.
    with pytest.raises(ConfigError, match=r"time_rules\[0\]\.prefer\[0\]"):
        make_config(time_rules=[dict(OFF_PEAK, prefer=["nope"])])
    with pytest.raises(ConfigError, match=r"ab_tests\[0\]\.route: route \"x\""):
        ab = {"name": "t", "route": "x", "production": "small", "candidate": "large"}
        make_config(ab_tests=[ab])
