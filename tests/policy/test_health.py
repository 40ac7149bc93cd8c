"""Health-aware ordering: error EWMA, latency EWMA, circuits, probes."""

from __future__ import annotations

from collections.abc import Callable

from policy_helpers import classified, make_config, req

from mixroute.policy import FakeClock, Outcome, PolicyEngine
from mixroute.policy.health import CircuitState
from mixroute.policy.wiring import outcome_of


async def _fail(engine: PolicyEngine, model: str, n: int) -> None:
    for _ in range(n):
        d = await engine.decide(classified("math"), req())
        await engine.record(d, Outcome(200, "medium", failed=(model,)))


async def test_failing_model_is_skipped_then_probed_back(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    cfg = make_config(health={"min_samples": 3, "cooldown_s": 30})
    engine = engine_for(cfg)
    await _fail(engine, "small", 2)
    assert (await engine.decide(classified("math"), req())).model == "small"
    await _fail(engine, "small", 2)  # EWMA 1 − 0.8⁴ = 0.59 > 0.5
    d = await engine.decide(classified("math"), req())
    assert d.model == "medium" and d.rule.endswith("health:skip=small")
    assert d.candidates[-1] == "small"  # still there as a last resort
    clock.advance(31)
    probe = await engine.decide(classified("math"), req())
    assert probe.model == "small"  # half-open: one probe
    other = await engine.decide(classified("math"), req())
    assert other.model == "medium"  # only one probe at a time
    await engine.record(probe, Outcome(200, "small", latency_ms=50))
    assert (await engine.decide(classified("math"), req())).model == "small"


async def test_failed_probe_rests_again(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    engine = engine_for(make_config(health={"min_samples": 1, "cooldown_s": 10}))
    await _fail(engine, "small", 4)
    clock.advance(11)
    probe = await engine.decide(classified("math"), req())
    assert probe.model == "small"
    await engine.record(probe, Outcome(200, "medium", failed=("small",)))
    clock.advance(5)
    assert (await engine.decide(classified("math"), req())).model == "medium"
    clock.advance(6)
    assert (await engine.decide(classified("math"), req())).model == "small"


async def test_slow_model_is_skipped(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(health={"min_samples": 2, "max_latency_ms": 1000}))
    for _ in range(2):
        d = await engine.decide(classified("math"), req())
        await engine.record(d, Outcome(200, "small", latency_ms=5000))
    assert (await engine.decide(classified("math"), req())).model == "medium"


async def test_breaker_state_is_read_before_sending(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    states: dict[str, CircuitState] = {"small": "open"}
    engine = engine_for(breaker_state=states.get)
    assert (await engine.decide(classified("math"), req())).model == "medium"
    states["small"] = "half_open"
    assert (await engine.decide(classified("math"), req())).model == "small"
    # The push interface works too.
    engine2 = engine_for()
    engine2.health.report_circuit("small", "open")
    assert (await engine2.decide(classified("math"), req())).model == "medium"


async def test_client_faults_do_not_make_a_model_unhealthy(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(health={"min_samples": 1}))
    for _ in range(5):
        d = await engine.decide(classified("math"), req())
        # The upstream answered 400 (a bad parameter): passed on, not a failure.
        out = outcome_of(
            status=400,
            model=None,
            tried=["small"],
            latency_ms=5,
            ttft_ms=None,
            cost_usd=0.0,
        )
        assert out.model == "small" and out.failed == ()
        await engine.record(d, out)
    assert (await engine.decide(classified("math"), req())).model == "small"
    failed = outcome_of(
        status=503,
        model=None,
        tried=["small", "medium"],
        latency_ms=5,
        ttft_ms=None,
        cost_usd=0.0,
    )
    assert failed.model is None and failed.failed == ("small", "medium")
