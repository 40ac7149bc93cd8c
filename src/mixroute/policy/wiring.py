"""The seam between the gateway (``mixroute.api``) and the policy engine.

The gateway calls four functions so its own code stays about HTTP:

- ``policy_request`` — the ``PolicyRequest`` for a parsed body and the
  request's headers (``x-session-id``) and client key id;
- ``body_for_model`` — the body to send to one candidate: the route's
  reasoning parameter in that provider's form, and chat history condensed to
  the model's window when it does not fit (and whether it was);
- ``outcome_of`` — the ``Outcome`` of a finished request, from what the
  gateway observed (models tried, the one that answered, status, cost);
- ``build_engine`` — the engine for a config, on the shared state store, with
  the upstream breakers as its circuit source and the feedback book beside
  the usage ledger unless ``policies.feedback.path`` says otherwise.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mixroute.config.schema import MixrouteConfig
from mixroute.policy.costq import DifficultyScorerLike
from mixroute.policy.decision import RoutingDecision
from mixroute.policy.engine import PolicyEngine
from mixroute.policy.feedback import FeedbackBook, feedback_path
from mixroute.policy.health import CircuitState
from mixroute.policy.request import Outcome, PolicyRequest
from mixroute.policy.store import PolicyStore

SESSION_HEADER = "x-session-id"
log = logging.getLogger("mixroute.policy")


def policy_request(
    body: Mapping[str, Any],
    *,
    request_id: str,
    key_id: str | None,
    headers: Mapping[str, str],
) -> PolicyRequest:
    """The policy's view of a chat or completions request body."""
    if "messages" not in body and isinstance(body.get("prompt"), str):
        body = {**body, "messages": [{"role": "user", "content": body["prompt"]}]}
    session = headers.get(SESSION_HEADER) or None
    return PolicyRequest.from_body(
        body, request_id=request_id, key_id=key_id, session_id=session
    )


def body_for_model(
    engine: PolicyEngine,
    decision: RoutingDecision,
    model: str,
    body: Mapping[str, Any],
    *,
    trim: bool = True,
) -> tuple[Mapping[str, Any], bool]:
    """``body`` as ``model`` should receive it, and whether history was trimmed.

    Reasoning parameters the client set itself are left alone. ``trim=False``
    skips condensing the history (the caller knows the model holds it all).
    """
    out: dict[str, Any] | None = None
    params = engine.provider_params(decision, model)
    for key, value in params.items():
        if key not in body:
            out = out if out is not None else dict(body)
            out[key] = value
    trimmed = False
    messages = body.get("messages")
    if trim and isinstance(messages, list) and engine.config.policies.context.trim:
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        fitted, trimmed = engine.prepare_messages(
            model, messages, max_tokens if isinstance(max_tokens, int) else None
        )
        if trimmed:
            out = out if out is not None else dict(body)
            out["messages"] = fitted
    return (out if out is not None else body), trimmed


def outcome_of(
    *,
    status: int,
    model: str | None,
    tried: Sequence[str],
    latency_ms: float,
    ttft_ms: float | None,
    cost_usd: float,
) -> Outcome:
    """The outcome the engine records: every tried model but the one that
    answered counts as failed. A 4xx status is the client's doing: the last
    model tried answered it (an upstream's 400 passed on, or a client that
    hung up mid-answer), so it does not count against that model."""
    answered = model if status < 500 else None
    if answered is None and 400 <= status < 500 and tried:
        answered = tried[-1]
    failed = tuple(m for m in tried if m != answered)
    return Outcome(
        status=status,
        model=answered,
        failed=failed,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        cost_usd=cost_usd,
    )


def builtin_scorer() -> DifficultyScorerLike | None:
    """The shipped difficulty scorer (``classify.difficulty``), or None when
    it is not installed or its artifact is missing."""
    try:
        module = importlib.import_module("mixroute.classify.difficulty")
        scorer: DifficultyScorerLike | None = module.DifficultyScorer.load_builtin()
    except Exception:  # an optional part: its absence only disables scoring
        log.info("no difficulty scorer; cost-quality uses hard_probability")
        return None
    return scorer


def build_engine(
    config: MixrouteConfig,
    store: PolicyStore | None = None,
    *,
    breaker_state: Callable[[str], CircuitState | None] | None = None,
    difficulty_scorer: DifficultyScorerLike | None = None,
) -> PolicyEngine:
    """The engine the gateway uses (see the module doc)."""
    if difficulty_scorer is None:
        difficulty_scorer = builtin_scorer()
    book = None
    if config.policies.feedback.enabled:
        book = FeedbackBook(feedback_path(config))
    return PolicyEngine(
        config,
        store,
        difficulty_scorer=difficulty_scorer,
        feedback=book,
        breaker_state=breaker_state,
    )
