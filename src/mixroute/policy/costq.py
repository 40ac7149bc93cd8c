"""Cost-quality routing: the cheapest candidate expected to meet the bar.

The rule, exactly:

1. The prompt's difficulty ``p`` (0..1) is the probability that a cheap model
   fails it: the classification's ``hard_probability``, or the difficulty
   scorer's score of the prompt text when a scorer is given.
2. The knob ``c`` (0 cheapest .. 1 best) becomes a threshold ``τ`` on ``p``:
   the scorer's ``strong_threshold_for(c)`` when it has one (calibrated on the
   dev curve), else ``τ = 1 - c``. Between the cheapest and the best candidate
   this is RouteLLM's rule: the strong model when ``p ≥ τ``. A target share
   of strong calls ``s`` (``target_strong_share``) may set ``τ`` instead: the
   scorer's ``threshold_for_share(s)`` (the threshold that sent that share of
   its training prompts to the strong model), else ``τ = 1 - s``.
3. Candidates are ranked by quality on the route (``routes[].quality``, then a
   feedback-learned score, then the model's ``quality``). With ``q_lo`` and
   ``q_hi`` the lowest and highest of them, each candidate gets a normalised
   quality ``u = (q - q_lo) / (q_hi - q_lo)`` (1 for all when equal).
4. A candidate handles the prompt when ``p < τ + u · (1 - τ)``: the weakest
   only below the threshold, the best always, one in between up to a share
   ``u`` of the remaining range. The pick is the cheapest candidate that
   handles the prompt (ties: the higher quality). At ``c = 1`` the pick is the
   best candidate; at ``c = 0`` (``τ = 1``) the cheapest.

The other candidates follow in ascending price, so a failure falls back to the
next cheapest that could also answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mixroute.config.schema import ModelConfig


class DifficultyScorerLike(Protocol):
    """The part of ``classify.difficulty.DifficultyScorer`` the policy uses."""

    def score(self, text: str, embedding: object = None) -> float: ...


@dataclass(frozen=True)
class CostQualityPick:
    """The ordered candidates, the difficulty used and the threshold."""

    order: tuple[str, ...]
    difficulty: float
    threshold: float


def threshold_for(c: float, scorer: object | None, share: float | None = None) -> float:
    """The hard-probability threshold ``τ`` for knob ``c``, or for a target
    strong share when ``share`` is given (see module doc)."""
    if share is not None:
        by_share = getattr(scorer, "threshold_for_share", None)
        return float(by_share(share)) if callable(by_share) else 1.0 - share
    fn = getattr(scorer, "strong_threshold_for", None)
    if callable(fn):
        return float(fn(c))
    return 1.0 - c


def rank_cost_quality(
    candidates: Sequence[str],
    difficulty: float,
    knob: float,
    *,
    quality: Callable[[str], float],
    price: Callable[[str], float],
    scorer: object | None = None,
    share: float | None = None,
) -> CostQualityPick:
    """Order ``candidates`` by the rule in the module doc; first is the pick.
    ``share``, when given, replaces ``knob`` (a target share of strong calls)."""
    names = list(dict.fromkeys(candidates))
    tau = threshold_for(knob, scorer, share)
    q = {n: quality(n) for n in names}
    lo, hi = min(q.values()), max(q.values())
    by_price = sorted(names, key=lambda n: (price(n), -q[n]))
    if (knob if share is None else share) >= 1.0:
        pick = max(names, key=lambda n: (q[n], -price(n)))
    else:
        pick = by_price[-1]
        for n in by_price:
            u = 1.0 if hi == lo else (q[n] - lo) / (hi - lo)
            if u >= 1.0 or difficulty < tau + u * (1.0 - tau):
                pick = n
                break
    rest = [n for n in by_price if n != pick]
    return CostQualityPick((pick, *rest), difficulty, tau)


def blended_price(m: ModelConfig) -> float:
    """USD per million tokens, input and output summed: the price ranking key."""
    return m.price.input_per_mtok + m.price.output_per_mtok


def worst_case_cost(
    m: ModelConfig, prompt_tokens: int, max_tokens: int | None
) -> float:
    """USD if the model reads every prompt token and writes its output limit."""
    out = m.max_output_tokens if max_tokens is None else max_tokens
    return (
        prompt_tokens * m.price.input_per_mtok + out * m.price.output_per_mtok
    ) / 1e6
