"""What a model can serve, and each provider's reasoning parameter.

A candidate is skipped before any call when the request needs something it
lacks: image parts need ``vision``, ``tools`` need ``tools``, a JSON
``response_format`` needs ``json``. Its context window must hold the prompt
tokens plus ``max_tokens`` (the model's output limit when unset, capped at a
quarter of the window so an unset limit does not rule out every model);
``fits`` says whether it does.
"""

from __future__ import annotations

from typing import Any, Literal

from mixroute.config.schema import ModelConfig, RouteConfig
from mixroute.policy.request import Needs

Effort = Literal["off", "low", "medium", "high"]
# Anthropic's extended thinking takes a token budget, not a level; these are
# the budgets a level stands for (Anthropic's minimum is 1,024).
THINKING_BUDGET = {"low": 1024, "medium": 4096, "high": 16384}


def lacks(model: ModelConfig, needs: Needs) -> list[str]:
    """The capabilities ``needs`` asks for that ``model`` does not have."""
    missing = []
    if needs.vision and "vision" not in model.capabilities:
        missing.append("vision")
    if needs.tools and "tools" not in model.capabilities:
        missing.append("tools")
    if needs.json and "json" not in model.capabilities:
        missing.append("json")
    return missing


def output_reserve(model: ModelConfig, max_tokens: int | None) -> int:
    """Tokens the window must keep free for the answer."""
    if max_tokens is not None:
        return max_tokens
    return min(model.max_output_tokens, model.context_window // 4)


def fits(model: ModelConfig, prompt_tokens: int, max_tokens: int | None) -> bool:
    """Whether the prompt and the answer fit the model's context window."""
    return prompt_tokens + output_reserve(model, max_tokens) <= model.context_window


def route_effort(route: RouteConfig | None) -> Effort:
    """The route's reasoning level (``reasoning: true`` alone means medium)."""
    if route is None:
        return "off"
    if route.reasoning_effort is not None:
        return route.reasoning_effort
    return "medium" if route.reasoning else "off"


def reasoning_params(
    model: ModelConfig, effort: Effort, max_tokens: int | None = None
) -> dict[str, Any]:
    """Request-body parameters that ask ``model``'s provider for ``effort``.

    OpenAI-compatible (and Azure): ``{"reasoning_effort": effort}``. Anthropic:
    ``{"thinking": {"type": "enabled", "budget_tokens": N}}`` with N from
    ``THINKING_BUDGET``, kept below ``max_tokens`` as Anthropic requires.
    ``off`` sends nothing: the provider's default applies.
    """
    if effort == "off":
        return {}
    if model.provider == "anthropic":
        budget = THINKING_BUDGET[effort]
        limit = max_tokens or model.max_output_tokens
        if limit <= 1024:
            # Anthropic rejects thinking budgets under 1,024 or at max_tokens.
            return {}
        budget = min(budget, limit - 1)
        return {"thinking": {"type": "enabled", "budget_tokens": budget}}
    return {"reasoning_effort": effort}
