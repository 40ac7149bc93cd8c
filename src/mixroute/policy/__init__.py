"""Routing policy: classification + request + live state → decision."""

from mixroute.policy.clock import Clock, FakeClock, SystemClock
from mixroute.policy.decision import PolicyTrace, RoutingDecision, SeedPolicy
from mixroute.policy.engine import PolicyEngine
from mixroute.policy.feedback import FeedbackBook
from mixroute.policy.health import HealthView
from mixroute.policy.request import Needs, Outcome, PolicyRequest
from mixroute.policy.store import MemoryPolicyStore, PolicyStore

__all__ = [
    "Clock",
    "FakeClock",
    "FeedbackBook",
    "HealthView",
    "MemoryPolicyStore",
    "Needs",
    "Outcome",
    "PolicyEngine",
    "PolicyRequest",
    "PolicyStore",
    "PolicyTrace",
    "RoutingDecision",
    "SeedPolicy",
    "SystemClock",
]
