"""Spending limits per key, route or overall, per day or month, in USD.

Before a call the engine reserves the request's worst-case cost (every prompt
token plus ``max_tokens`` — or the model's output limit — at the model's
prices) on every budget that applies, with an atomic check-and-add in the
store, so concurrent requests can never take a budget past its limit. After
the call the reservation is settled to the real cost. Periods are calendar
days or months in ``policies.timezone``; a period's total expires a day after
the period ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from mixroute.config.policies import BudgetConfig
from mixroute.policy.store import PolicyStore


@dataclass(frozen=True)
class BudgetSlot:
    """One budget applied to one request: its config and store key."""

    config: BudgetConfig
    key: str
    ttl_s: float


@dataclass(frozen=True)
class Reservation:
    """An amount held on a budget until the call settles."""

    budget: str
    key: str
    amount: float


class BudgetBook:
    """Finds the budgets a request falls under; reserves and settles."""

    def __init__(
        self, budgets: Sequence[BudgetConfig], store: PolicyStore, tz: str
    ) -> None:
        self.budgets = list(budgets)
        self.store = store
        self.tz = ZoneInfo(tz)

    def slots(
        self, key_id: str | None, route: str | None, now: datetime
    ) -> list[BudgetSlot]:
        """The budgets that apply to a request of ``key_id`` on ``route``."""
        if not self.budgets:
            return []
        local = now.astimezone(self.tz)
        out = []
        for b in self.budgets:
            if b.scope == "global":
                who = "*"
            elif b.scope == "key":
                who = key_id or "-"
                if b.match not in ("*", who):
                    continue
            else:
                if route is None or b.match not in ("*", route):
                    continue
                who = route
            period, end = _period(local, b.period)
            ttl = (end - local).total_seconds() + 86_400
            out.append(BudgetSlot(b, f"budget:{b.name}:{who}:{period}", ttl))
        return out

    async def near_limit(self, slots: Sequence[BudgetSlot]) -> list[str]:
        """Names of budgets whose spend (with reservations) reached
        ``step_down_at`` of their limit."""
        names = []
        for s in slots:
            spent = await self.store.amount(s.key)
            if spent >= s.config.step_down_at * s.config.limit_usd:
                names.append(s.config.name)
        return names

    async def reserve(
        self, slots: Sequence[BudgetSlot], amount: float
    ) -> tuple[tuple[Reservation, ...], str | None]:
        """Hold ``amount`` on every slot, all or none. Returns the reservations,
        or an empty tuple and the name of the budget that refused."""
        held: list[Reservation] = []
        for s in slots:
            ok = await self.store.reserve(s.key, amount, s.config.limit_usd, s.ttl_s)
            if not ok:
                await self.release(held)
                return (), s.config.name
            held.append(Reservation(s.config.name, s.key, amount))
        return tuple(held), None

    async def release(self, reservations: Sequence[Reservation]) -> None:
        """Give back reservations whose call never went out."""
        for r in reservations:
            await self.store.settle(r.key, r.amount, 0.0)

    async def settle(self, reservations: Sequence[Reservation], cost: float) -> None:
        """Replace each reservation by the call's real cost."""
        for r in reservations:
            await self.store.settle(r.key, r.amount, cost)

    async def spent(self, slot: BudgetSlot) -> float:
        """Spend plus open reservations on one budget in its current period."""
        return await self.store.amount(slot.key)


def _period(local: datetime, period: str) -> tuple[str, datetime]:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return local.strftime("%Y-%m-%d"), day + timedelta(days=1)
    first = day.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return local.strftime("%Y-%m"), nxt
