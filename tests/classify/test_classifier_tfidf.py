"""The classifier on the tfidf backend: routes, odd input, cache, messages."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from classify_helpers import DATA, with_classifier

from mixroute.classify import build_classifier
from mixroute.classify.base import Classifier
from mixroute.config.schema import MixrouteConfig
from mixroute.policy import SeedPolicy


@pytest.mark.parametrize(
    ("prompt", "route"),
    [
        ("Write a Python function that merges two sorted lists.", "code"),
        ("What is the integral of x^2 from 0 to 3?", "math"),
        ("Write a poem about the sea at night.", "creative"),
        (
            "Summarize the following article in two sentences: The council voted ...",
            "summarization",
        ),
        ("who won the world cup in 1998", "open_qa"),
    ],
)
def test_obvious_prompts_get_their_route(
    tfidf: Classifier, prompt: str, route: str
) -> None:
    c = tfidf.classify(prompt)
    assert c.route == route
    assert 0.0 <= c.confidence <= 1.0
    assert c.backend == "tfidf"
    assert abs(sum(c.scores.values()) - 1.0) < 1e-6
    assert set(c.scores) == set(tfidf.routes)


def test_every_route_of_the_config_is_reachable(tfidf: Classifier) -> None:
    assert "brainstorming" in tfidf.routes
    c = tfidf.classify("Brainstorm ten names for my new bakery.")
    assert c.route == "brainstorming"


@pytest.mark.parametrize("text", ["", "   \n\t ", "\x00\x01\x02"])
def test_empty_input_gets_a_low_confidence_decision(
    tfidf: Classifier, tfidf_config: MixrouteConfig, text: str
) -> None:
    c = tfidf.classify(text)
    assert c.confidence == 0.0
    decision = SeedPolicy(tfidf_config).decide(c)
    assert decision.rule == "default:low-confidence"
    assert decision.model == tfidf_config.policies.default_model


def test_binary_junk_gets_a_decision(tfidf: Classifier) -> None:
    junk = bytes(range(256)).decode("latin-1") * 40 + "\ud800\udfff"
    c = tfidf.classify(junk)
    assert c.route in tfidf.routes
    assert c.confidence <= 0.5  # never trusted with a cheap model
    assert 0.0 <= c.hard_probability <= 1.0


def test_a_megabyte_prompt_is_classified_on_a_bounded_window(tfidf: Classifier) -> None:
    body = "def handler(event):\n    return process(event)\n" * 25_000
    huge = "Please review this Python code for bugs.\n" + body
    assert len(huge) > 1_000_000
    c = tfidf.classify(huge)
    assert c.route == "code"
    # The window is what gets classified: the same head and tail, same answer.
    assert tfidf.classify(huge[:2700] + "\n" + huge[-1300:]).route == "code"


def test_typos_do_not_change_the_route(tfidf: Classifier) -> None:
    rows = [json.loads(x) for x in (DATA / "typos.jsonl").read_text().splitlines()]
    same = [
        tfidf.classify(r["prompt"]).route == tfidf.classify(r["variant"]).route
        for r in rows
    ]
    assert np.mean(same) >= 0.9, same


def test_non_english_prompts_do_not_collapse_into_one_route(tfidf: Classifier) -> None:
    rows = [
        json.loads(x) for x in (DATA / "multilingual.jsonl").read_text().splitlines()
    ]
    pred = [tfidf.classify(r["prompt"]).route for r in rows]
    top_share = Counter(pred).most_common(1)[0][1] / len(pred)
    accuracy = np.mean([p == r["category"] for p, r in zip(pred, rows, strict=True)])
    assert top_share < 0.5, Counter(pred)
    assert accuracy >= 0.6, list(zip(pred, [r["category"] for r in rows], strict=True))


def test_cache_is_keyed_on_normalised_text(tfidf_config: MixrouteConfig) -> None:
    clf = build_classifier(with_classifier(tfidf_config, cache_size=2))
    first = clf.classify("Compose a haiku about frogs")
    again = clf.classify("  compose a HAIKU   about frogs ")
    assert again.route == first.route and again.scores == first.scores
    cache = clf._cache  # type: ignore[attr-defined]
    assert len(cache) == 1
    clf.classify("one more prompt")
    clf.classify("and another prompt")
    assert len(cache) == 2  # bounded, least recently used dropped


def test_cache_can_be_disabled(tfidf_config: MixrouteConfig) -> None:
    clf = build_classifier(with_classifier(tfidf_config, cache_size=0))
    clf.classify("Compose a haiku about frogs")
    assert len(clf._cache) == 0  # type: ignore[attr-defined]


def test_build_classifier_is_cached(tfidf_config: MixrouteConfig) -> None:
    assert build_classifier(tfidf_config) is build_classifier(tfidf_config)


def test_messages_use_the_last_user_turn_and_ignore_images(tfidf: Classifier) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a poem about spring."},
        {"role": "assistant", "content": "Blossoms wake ..."},
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,AAAA"},
                },
                {
                    "type": "text",
                    "text": "Now write a Python function that sorts tuples.",
                },
            ],
        },
    ]
    assert tfidf.classify_messages(messages).route == "code"
    assert tfidf.classify_messages([]).confidence == 0.0


def test_lookup_answers_only_what_was_classified(tfidf: Classifier) -> None:
    messages = [{"role": "user", "content": "Sort a list of tuples in Rust, please."}]
    assert tfidf.lookup_messages(messages) is None  # computes nothing
    first = tfidf.classify_messages(messages)
    again = [{"role": "user", "content": "  sort a list of tuples in RUST, please. "}]
    hit = tfidf.lookup_messages(again)  # the cache key folds case and spaces
    assert hit is not None
    assert (hit.route, hit.confidence) == (first.route, first.confidence)
    other = [{"role": "user", "content": "Sort a list of tuples in Go, please."}]
    assert tfidf.lookup_messages(other) is None


def test_context_turn_helps_a_vague_follow_up(tfidf: Classifier) -> None:
    follow_up = "ok, and the second one?"
    alone = tfidf.classify(follow_up)
    with_context = tfidf.classify_messages(
        [
            {
                "role": "user",
                "content": "Solve these equations: 2x + 3 = 11 and x^2 = 49.",
            },
            {"role": "assistant", "content": "x = 4 for the first one."},
            {"role": "user", "content": follow_up},
        ]
    )
    assert with_context.scores["math"] > alone.scores["math"]


HARD_PROMPT = (
    "Prove rigorously that for every integer n > 1 the sum "
    "$\\sum_{k=1}^{n} 1/k$ is never an integer. Work step by step:\n"
    "1. bound the largest power of two\n2. show the parity argument\n"
    "3. handle the edge cases\n" + "Consider the integral \\int_0^1 x^n dx. " * 5
)


def test_heuristic_tier_without_training() -> None:
    from mixroute.classify.tier import heuristic_hard_probability, tier_of

    easy = heuristic_hard_probability("what is the capital of france", "open_qa")
    hard = heuristic_hard_probability(HARD_PROMPT, "math")
    assert 0.0 <= easy < hard <= 1.0
    assert tier_of(easy, 0.35, 0.65) == "simple"
    assert tier_of(hard, 0.35, 0.65) in ("medium", "complex")


def test_tier_is_cut_from_hard_probability(
    tfidf: Classifier, tfidf_config: MixrouteConfig
) -> None:
    from mixroute.classify.tier import tier_of

    medium, complex_ = tfidf._tier_cuts  # type: ignore[attr-defined]
    assert 0.0 < medium <= complex_ < 1.0
    for text in ("what is the capital of france", HARD_PROMPT):
        c = tfidf.classify(text)
        assert 0.0 <= c.hard_probability <= 1.0
        assert c.tier == tier_of(c.hard_probability, medium, complex_)


def test_explicit_tier_cuts_override_the_scorer_scale(
    tfidf_config: MixrouteConfig,
) -> None:
    from mixroute.classify import build_classifier

    tiers = tfidf_config.classifier.tiers.model_copy(
        update={"medium": 0.0, "complex": 0.0}
    )
    settings = tfidf_config.classifier.model_copy(update={"tiers": tiers})
    config = tfidf_config.model_copy(update={"classifier": settings})
    assert build_classifier(config).classify("what is 2 + 2").tier == "complex"


def test_embed_returns_unit_rows(tfidf: Classifier) -> None:
    vectors = np.asarray(tfidf.embed(["hello world", "a poem about rain", ""]))
    assert vectors.dtype == np.float32
    assert vectors.shape[0] == 3
    norms = np.linalg.norm(vectors[:2], axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_a_user_route_without_head_class_is_reached_by_utterances(
    tfidf_config: MixrouteConfig,
) -> None:
    legal = tfidf_config.routes[0].model_copy(
        update={
            "name": "legal_contracts",
            "utterances": [
                "Review this non-disclosure agreement clause for risks.",
                "Is this indemnification clause in my lease enforceable?",
                "Draft a termination clause for a services contract.",
                "What does force majeure mean in this supplier contract?",
            ],
        }
    )
    config = tfidf_config.model_copy(update={"routes": [*tfidf_config.routes, legal]})
    clf = build_classifier(config)
    c = clf.classify("Review the indemnification clause in this services contract.")
    assert c.route == "legal_contracts"
    assert (
        clf.classify("Write a Python function that reverses a string.").route == "code"
    )


def test_a_config_with_some_shipped_routes_is_not_over_confident(
    tfidf_config: MixrouteConfig,
) -> None:
    # Only "code" of the head's classes is a route here: a prompt the head
    # puts in another class must not have that share handed to "code".
    code = next(r for r in tfidf_config.routes if r.name == "code")
    chitchat = code.model_copy(
        update={
            "name": "chitchat",
            "utterances": ["hi, how are you?", "tell me about your day"],
        }
    )
    clf = build_classifier(tfidf_config.model_copy(update={"routes": [code, chitchat]}))
    safe = tfidf_config.classifier.thresholds.safe
    for prompt in (
        "Prove that there are infinitely many primes.",
        "Solve for x: 3x + 7 = 22.",
    ):
        c = clf.classify(prompt)
        assert c.confidence <= safe, (prompt, c)
        assert sum(c.scores.values()) < 0.5
    c = clf.classify("Write a Python function that reverses a string.")
    assert c.route == "code" and c.confidence > safe


def test_utterances_only_classifier_without_head(tfidf_config: MixrouteConfig) -> None:
    clf = build_classifier(with_classifier(tfidf_config, head=None))
    assert clf.classify("Compose a sonnet about the autumn rain").route == "creative"


def test_missing_head_file_is_a_config_error(
    tfidf_config: MixrouteConfig, tmp_path: Path
) -> None:
    from mixroute.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        build_classifier(with_classifier(tfidf_config, head=str(tmp_path / "nope.npz")))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a head artifact"):
        build_classifier(with_classifier(tfidf_config, head=str(bad)))
