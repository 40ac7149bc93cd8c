"""Cross-checks of the ``policies:`` section against models and routes."""

from __future__ import annotations

from mixroute.config.schema import MixrouteConfig


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
