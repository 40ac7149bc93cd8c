"""Time rules: during a local time range, some models go first or last.

A rule matches when the local time in ``policies.timezone`` falls in
``[start, end)`` on one of its ``days`` (``weekday`` is Monday to Friday,
``weekend`` Saturday and Sunday); a range whose end is before its start wraps
past midnight, and the day tested is the day the range started. Matching rules
apply in config order: ``prefer`` (and local models with ``prefer_local``) move
to the front in their listed order, ``avoid`` to the back. Models not among
the candidates are never added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mixroute.config.policies import TimeRuleConfig

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def _day_ok(rule: TimeRuleConfig, weekday: int) -> bool:
    name = _DAYS[weekday]
    if rule.days == "all":
        return True
    if rule.days == "weekday":
        return weekday < 5
    if rule.days == "weekend":
        return weekday >= 5
    return name in rule.days


def rule_active(rule: TimeRuleConfig, local: datetime) -> bool:
    """Whether ``rule`` is in force at the local time ``local``."""
    start, end = _minutes(rule.start), _minutes(rule.end)
    t = local.hour * 60 + local.minute
    if start <= end:
        return start <= t < end and _day_ok(rule, local.weekday())
    if t >= start:
        return _day_ok(rule, local.weekday())
    if t < end:
        return _day_ok(rule, (local - timedelta(days=1)).weekday())
    return False


class TimeRules:
    """Applies the configured time rules to a candidate order."""

    def __init__(self, rules: Sequence[TimeRuleConfig], tz: str) -> None:
        self.rules = list(rules)
        self.tz = ZoneInfo(tz)

    def apply(
        self,
        candidates: Sequence[str],
        route: str | None,
        now: datetime,
        is_local: Callable[[str], bool],
    ) -> tuple[list[str], list[str]]:
        """The reordered candidates and the names of the rules that matched."""
        if not self.rules:
            return list(candidates), []
        local = now.astimezone(self.tz)
        order = list(candidates)
        fired: list[str] = []
        for rule in self.rules:
            if rule.routes is not None and route not in rule.routes:
                continue
            if not rule_active(rule, local):
                continue
            front = [m for m in rule.prefer if m in order]
            if rule.prefer_local:
                front += [m for m in order if is_local(m) and m not in front]
            back = [m for m in rule.avoid if m in order and m not in front]
            middle = [m for m in order if m not in front and m not in back]
            new = front + middle + back
            if new != order:
                fired.append(rule.name)
            order = new
        return order, fired
