"""Config checks for the guards that pydantic cannot express on its own."""

from __future__ import annotations

from mixroute.config.schema import MixrouteConfig


def check_guard_references(config: MixrouteConfig) -> list[str]:
    """One sentence per problem: ``route_local`` needs a ``local: true`` model."""
    if any(m.local for m in config.models):
        return []
    problems = []
    if config.guards.pii == "route_local":
        problems.append(
            "guards.pii: route_local sends prompts with PII to models with "
            "local: true, and no model has it"
        )
    for i, route in enumerate(config.routes):
        if route.guards.pii == "route_local":
            problems.append(
                f"routes[{i}].guards.pii: route_local sends prompts with PII to "
                "models with local: true, and no model has it"
            )
    return problems
