"""Routing policy: classification + request → decision."""

from mixroute.policy.decision import RoutingDecision, SeedPolicy

__all__ = ["RoutingDecision", "SeedPolicy"]
