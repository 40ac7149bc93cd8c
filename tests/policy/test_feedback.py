"""Feedback: ratings, Bayesian quality, persistence, training rows, users."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from policy_helpers import classified, make_config, req

from mixroute.errors import ClientError
from mixroute.policy import FakeClock, FeedbackBook, Outcome, PolicyEngine
from mixroute.policy.feedback import (
    merge_feedback_rows,
    parse_rating,
    training_rows,
    write_training_rows,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, 1.0), (False, 0.0), ("up", 1.0), ("down", 0.0), (0.25, 0.25), (1, 1.0)],
)
def test_ratings_accept_thumbs_and_numbers(value: object, expected: float) -> None:
    assert parse_rating(value) == expected


@pytest.mark.parametrize("value", [1.5, -0.1, "meh", None])
def test_bad_ratings_are_client_errors(value: object) -> None:
    with pytest.raises(ClientError, match="rating"):
        parse_rating(value)


async def _rate(
    engine: PolicyEngine,
    n: int,
    rating: float,
    user: str = "u",
    model: str = "small",
    start: int = 0,
) -> None:
    for i in range(start, start + n):
        d = await engine.decide(
            classified("math"), req(request_id=f"r{i}", key_id="k", user=user)
        )
        await engine.record(d, Outcome(200, model))
        assert await engine.rate(f"r{i}", rating, key_id="k")


async def test_bayesian_quality_persists_across_restarts(
    engine_for: Callable[..., PolicyEngine], tmp_path: Path
) -> None:
    path = str(tmp_path / "fb.sqlite")
    cfg = make_config(feedback={"path": path, "prior_strength": 10, "refresh_s": 0})
    engine = engine_for(cfg)
    route = cfg.route("math")
    assert engine.quality(route, "small") == pytest.approx(0.55)
    await _rate(engine, 10, 1.0)
    assert engine.feedback is not None
    engine.feedback.refresh()  # decisions refresh it; here we ask directly
    # (0.55·10 + 10) / (10 + 10)
    assert engine.quality(route, "small") == pytest.approx(0.775)
    assert not await engine.rate("unknown", 1.0, key_id="k")
    # Only the key that made a request may rate it.
    assert not await engine.rate("r0", 0.0, key_id="someone-else")
    assert engine.feedback is not None
    engine.feedback.close()
    again = engine_for(cfg)
    assert again.quality(route, "small") == pytest.approx(0.775)


async def test_learned_quality_moves_cost_quality_choice(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for(make_config(cost_quality=0.5))
    # p = 0.6 goes to medium (see test_costq); rate medium down to the bottom.
    assert (await engine.decide(classified("math", hard=0.6), req())).model == "medium"
    await _rate(engine, 30, 0.0, model="medium")
    d = await engine.decide(classified("math", hard=0.6), req())
    # medium's quality fell to (0.75·10 + 0)/40 ≈ 0.19, the lowest: small now
    # has u = (0.55 − 0.19)/(0.95 − 0.19) ≈ 0.47 and handles p < 0.74.
    assert d.model == "small"
    assert (await engine.decide(classified("math", hard=0.8), req())).model == "large"


async def test_user_who_rates_a_model_low_is_steered_away(
    engine_for: Callable[..., PolicyEngine],
) -> None:
    engine = engine_for()
    await _rate(engine, 3, 0.0, user="grumpy")
    d = await engine.decide(classified("math"), req(key_id="k", user="grumpy"))
    assert d.model == "medium" and d.rule.endswith("pref:avoid=small")
    happy = await engine.decide(classified("math"), req(key_id="k", user="happy"))
    assert happy.model == "small"
    # Within cost bounds: at most 3× the avoided model's price by default
    # (medium costs 2.0 vs 0.75); with a bound of 1.0 there is nowhere to go.
    routes = [
        {
            "name": "math",
            "candidates": ["small", "medium", "large"],
            "max_price_per_mtok": 1.0,
        },
        {"name": "chat", "candidates": ["local"]},
    ]
    assert engine.feedback is not None
    bounded = engine_for(make_config(routes=routes), feedback=engine.feedback)
    d = await bounded.decide(classified("math"), req(key_id="k", user="grumpy"))
    assert d.model == "small" and "pref" not in d.rule


async def test_training_rows_from_ratings(
    engine_for: Callable[..., PolicyEngine], tmp_path: Path
) -> None:
    engine = engine_for()
    for i, (model, rating) in enumerate(
        [("small", 1.0), ("small", 0.0), ("large", 0.0), ("large", 1.0)]
    ):
        d = await engine.decide(
            classified("math"), req(request_id=f"q{i}", text=f"prompt {i}")
        )
        await engine.record(d, Outcome(200, model))
        await engine.rate(f"q{i}", rating)
    assert isinstance(engine.feedback, FeedbackBook)
    rows = training_rows(engine.feedback, {"large"})
    by_id = {r["id"]: r for r in rows}
    assert by_id["q0"]["weak_correct"] == 1 and by_id["q0"]["strong_correct"] == 1
    assert by_id["q1"]["weak_correct"] == 0 and by_id["q1"]["strong_correct"] == 1
    assert by_id["q2"]["weak_correct"] == 0 and by_id["q2"]["strong_correct"] == 0
    assert "weak_correct" not in by_id["q3"]
    assert by_id["q0"]["prompt"] == "prompt 0" and by_id["q0"]["category"] == "math"
    out = tmp_path / "rows.jsonl"
    assert write_training_rows(rows, out) == 4
    assert json.loads(out.read_text().splitlines()[0])["id"] == "q0"


async def test_train_feedback_merges_rows_of_the_same_kind(
    engine_for: Callable[..., PolicyEngine], tmp_path: Path
) -> None:
    db = tmp_path / "fb.sqlite"
    cfg = make_config(feedback={"path": str(db), "refresh_s": 0})
    engine = engine_for(cfg)
    for i, (model, rating) in enumerate([("small", 0.0), ("large", 1.0)]):
        d = await engine.decide(
            classified("math"), req(request_id=f"q{i}", text=f"p{i}")
        )
        await engine.record(d, Outcome(200, model))
        await engine.rate(f"q{i}", rating)
    routes = tmp_path / "routes.jsonl"
    routes.write_text('{"prompt": "hello", "category": "chat"}\n')
    merged = merge_feedback_rows(cfg, routes, db)
    rows = [json.loads(line) for line in merged.read_text().splitlines()]
    assert rows == [
        {"prompt": "hello", "category": "chat"},
        {"prompt": "p0", "category": "math"},
        {"prompt": "p1", "category": "math"},
    ]
    hard = tmp_path / "costq.jsonl"
    hard.write_text(
        '{"id": "x", "prompt": "2+2", "weak_correct": 1, "strong_correct": 1}\n'
    )
    rows = [
        json.loads(x)
        for x in merge_feedback_rows(cfg, hard, db).read_text().splitlines()
    ]
    assert rows[1] == {
        "id": "q0",
        "prompt": "p0",
        "weak_correct": 0,
        "strong_correct": 1,
    }
    assert len(rows) == 2  # a strong model rated well says nothing about the weak


async def test_scores_refresh_in_the_background_and_old_requests_go(
    engine_for: Callable[..., PolicyEngine], clock: FakeClock
) -> None:
    fb = {"path": ":memory:", "refresh_s": 10, "retain_days": 1}
    engine = engine_for(make_config(feedback=fb))
    route = engine.config.route("math")
    await _rate(engine, 5, 1.0)
    await _rate(engine, 1, 1.0, start=5)  # this decision scheduled a refresh
    await asyncio.gather(*engine._background)
    before = engine.quality(route, "small")
    assert before > 0.55
    await _rate(engine, 1, 1.0, start=6)
    # Within refresh_s the snapshot stays as it was.
    await engine.decide(classified("math"), req())
    assert engine.quality(route, "small") == before
    d = await engine.decide(classified("math"), req(request_id="old", key_id="k"))
    await engine.record(d, Outcome(200, "small"))
    clock.advance(2 * 86_400)
    await engine.decide(classified("math"), req())
    await asyncio.gather(*engine._background)
    assert engine.quality(route, "small") > before
    assert not await engine.rate("old", 1.0, key_id="k")  # forgotten, unrated


async def test_close_keeps_what_was_learned(
    engine_for: Callable[..., PolicyEngine], tmp_path: Path
) -> None:
    fb = {"path": str(tmp_path / "fb.sqlite"), "refresh_s": 5}
    cfg = make_config(feedback=fb)
    engine = engine_for(cfg)
    await _rate(engine, 4, 0.0)
    await engine.close()
    again = engine_for(cfg)
    assert again.quality(cfg.route("math"), "small") == pytest.approx(0.55 * 10 / 14)
    await again.close()


async def test_requests_are_queued_and_written_in_batches(tmp_path: Path) -> None:
    import sqlite3
    import time

    path = tmp_path / "fb.sqlite"
    book = FeedbackBook(str(path))
    for i in range(3):
        book.remember_later(f"q{i}", "k", None, "math", "small", "", 1.0)
    # A rating right after the request finds it, queued or not.
    assert book.rate("q2", 1.0, 2.0, owner="k")

    def rows() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    assert rows() == 3
    book.remember_later("q3", "k", None, "math", "small", "", 1.0)
    deadline = time.monotonic() + 5
    while rows() < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the writer thread flushes on its own
    assert rows() == 4
    book.remember_later("q4", "k", None, "math", "small", "", 1.0)
    book.close()  # writes what is still queued
    assert rows() == 5
