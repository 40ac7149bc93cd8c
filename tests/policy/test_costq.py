"""Cost-quality routing: the cheapest candidate expected to meet the bar."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from policy_helpers import BASE, classified, make_config, req

from mixroute.policy import PolicyEngine
from mixroute.policy.costq import rank_cost_quality, worst_case_cost

Q = {"small": 0.55, "medium": 0.75, "large": 0.95}
PRICE = {"small": 0.75, "medium": 2.0, "large": 10.0}


def _rank(p: float, c: float, scorer: object | None = None) -> tuple[str, ...]:
    return rank_cost_quality(
        ["large", "small", "medium"],
        p,
        c,
        quality=Q.__getitem__,
        price=PRICE.__getitem__,
        scorer=scorer,
    ).order


@pytest.mark.parametrize(
    ("p", "c", "pick"),
    [
        (0.3, 0.5, "small"),  # below τ = 0.5
        (0.6, 0.5, "medium"),  # τ ≤ p < τ + 0.5·(1 − τ)
        (0.9, 0.5, "large"),
        (0.99, 0.0, "small"),  # c = 0: always the cheapest
        (0.01, 1.0, "large"),  # c = 1: always the best
    ],
)
def test_rule_picks_cheapest_that_meets_the_bar(p: float, c: float, pick: str) -> None:
    order = _rank(p, c)
    assert order[0] == pick
    # The rest follow cheapest first.
    rest = [m for m in ("small", "medium", "large") if m != pick]
    assert list(order[1:]) == rest


def test_scorer_threshold_replaces_one_minus_knob() -> None:
    class Scorer:
        def strong_threshold_for(self, c: float) -> float:
            return 0.2

    assert _rank(0.3, 0.5)[0] == "small"
    assert _rank(0.3, 0.5, Scorer())[0] == "medium"


def test_worst_case_uses_max_tokens_or_the_output_limit() -> None:
    cfg = make_config()
    large = cfg.model("large")
    assert worst_case_cost(large, 1000, 500) == pytest.approx((2000 + 4000) / 1e6)
    assert worst_case_cost(large, 0, None) == pytest.approx(4096 * 8 / 1e6)


async def test_engine_uses_difficulty_and_names_the_rule(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(cost_quality=0.5))
    easy = await engine.decide(classified("math", hard=0.1), req())
    hard = await engine.decide(classified("math", hard=0.95), req())
    assert easy.model == "small"
    assert hard.model == "large"
    assert easy.rule == "route:confident>cost-quality:p=0.10"
    # Unsure classifications keep the seed's default model.
    unsure = await engine.decide(classified("math", confidence=0.5, hard=0.1), req())
    assert unsure.model == "large" and "cost-quality" not in unsure.rule


async def test_engine_prefers_scorer_over_classification(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    class Scorer:
        def score(self, text: str, embedding: object = None) -> float:
            return 0.99 if "prove" in text else 0.01

    engine = engine_for(make_config(cost_quality=0.5), difficulty_scorer=Scorer())
    d = await engine.decide(classified("math", hard=0.01), req(text="prove it"))
    assert d.model == "large"
    assert d.trace is not None and d.trace.difficulty == pytest.approx(0.99)


async def test_route_quality_overrides_model_quality(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    routes = [
        {
            "name": "math",
            "candidates": ["small", "medium", "large"],
            # On this route the small model is as good as the large one.
            "quality": {"small": 0.95},
            "cost_quality": 0.9,
        },
        BASE["routes"][1],
    ]
    engine = engine_for(make_config(routes=routes))
    d = await engine.decide(classified("math", hard=0.9), req())
    assert d.model == "small"


def test_target_strong_share_sets_the_threshold() -> None:
    class Scorer:
        def threshold_for_share(self, share: float) -> float:
            return 0.9 if share < 0.5 else 0.1

    # Without a scorer τ = 1 − share: a 30 % share sends p ≥ 0.7 up.
    assert (
        rank_cost_quality(
            ["small", "large"],
            0.65,
            0.0,
            quality=Q.__getitem__,
            price=PRICE.__getitem__,
            share=0.3,
        ).order[0]
        == "small"
    )
    assert (
        rank_cost_quality(
            ["small", "large"],
            0.75,
            0.0,
            quality=Q.__getitem__,
            price=PRICE.__getitem__,
            share=0.3,
        ).order[0]
        == "large"
    )
    pick = rank_cost_quality(
        ["small", "large"],
        0.5,
        0.0,
        quality=Q.__getitem__,
        price=PRICE.__getitem__,
        share=0.6,
        scorer=Scorer(),
    )
    assert pick.order[0] == "large" and pick.threshold == 0.1


async def test_route_share_overrides_global_knob(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    routes = [
        {"name": "math", "candidates": ["small", "large"], "target_strong_share": 1.0},
        BASE["routes"][1],
    ]
    engine = engine_for(make_config(routes=routes, cost_quality=0.0))
    assert (await engine.decide(classified("math", hard=0.01), req())).model == "large"
    assert (await engine.decide(classified("chat", hard=0.99), req())).model == "local"
