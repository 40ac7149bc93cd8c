"""The difficulty scorer, its artifact, and the cost-quality metrics."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mixroute.classify.difficulty import (
    BUILTIN_PATH,
    EMB_DIM,
    EMB_TOKENS,
    DifficultyError,
    DifficultyScorer,
    TrainSettings,
    cost_quality_curve,
    curve_report,
    duplicate_groups,
    embed_prompts,
    embedding_input,
    evaluate_scorer,
    fit_scorer,
    grouped_folds,
    run_costq_eval,
    smooth_labels,
    train_difficulty_cli,
)
from mixroute.classify.encoder import OnnxEncoder
from mixroute.cli import app


@pytest.fixture(scope="module")
def builtin() -> DifficultyScorer:
    scorer = DifficultyScorer.load_builtin()
    assert scorer is not None, "the shipped difficulty artifact is missing"
    return scorer


EASY = [
    "Which of the following is a function of marketing?\nA. Promotion\nB. Fission\n"
    "C. Photosynthesis\nD. Erosion\nAnswer:",
    "Which branch of government makes the laws in the United States?\nA. Congress\n"
    "B. The Supreme Court\nC. The President\nD. The Cabinet\nAnswer:",
    "Sam has 3 apples and buys 2 more. How many apples does he have?",
]
HARD = [
    "Find the order of the factor group Z_6 x Z_4 / <(2, 2)>.\nA. 2\nB. 3\nC. 4\n"
    "D. 12\nAnswer:",
    "Statement 1 | Every integral domain has a field of quotients. Statement 2 | "
    "A polynomial of degree n over a ring can have at most n zeros.\nA. True, True\n"
    "B. False, False\nC. True, False\nD. False, True\nAnswer:",
    "A store sells pens at 3 for $4.50 and notebooks at $2.25 each. Maria buys 12 "
    "pens and 5 notebooks, pays with a $50 bill and then spends 40% of her change "
    "on snacks. How much money does she have left?",
]


def _costq_rows(n: int = 40) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        hard = i % 4 == 0
        rows.append(
            {
                "id": f"row-{i}",
                "prompt": (HARD if hard else EASY)[i % 3] + f" ({i})",
                "weak_correct": not hard,
                "strong_correct": True,
                "source": "test",
                "subject": None,
            }
        )
    return rows


# --- the shipped artifact ------------------------------------------------------------


def test_builtin_scores_are_probabilities(builtin: DifficultyScorer) -> None:
    for text in [*EASY, *HARD, "", "x" * 200_000, "日本語の質問です", "\x00\xff"]:
        p = builtin.score(text)
        assert 0.0 < p < 1.0


def test_harder_looking_prompts_score_higher(builtin: DifficultyScorer) -> None:
    # Pairwise: a maths word problem starts from a higher base rate than a
    # multiple-choice question, so compare like with like.
    for easy, hard in zip(EASY, HARD, strict=True):
        assert builtin.score(easy) < builtin.score(hard), (easy, hard)


@pytest.fixture(scope="module")
def encoder() -> OnnxEncoder:
    return OnnxEncoder(threads=1)


def test_builtin_has_topic_model_and_embedding_head(builtin: DifficultyScorer) -> None:
    assert builtin.topic is not None and len(builtin.topic.names) > 50
    assert builtin.uses_embedding and builtin.emb_tokens == EMB_TOKENS
    # Shipped inside the wheel: it must stay small.
    assert BUILTIN_PATH.stat().st_size < 5_000_000


def test_embedding_path_reads_the_real_embedding(
    builtin: DifficultyScorer, encoder: OnnxEncoder
) -> None:
    texts = [*EASY, *HARD]
    emb = embed_prompts(encoder, texts)
    assert emb.shape == (len(texts), EMB_DIM)
    with_emb = [builtin.score(t, e) for t, e in zip(texts, emb, strict=True)]
    assert all(0.0 < p < 1.0 for p in with_emb)
    assert with_emb != [builtin.score(t) for t in texts]
    for i in range(len(EASY)):
        assert with_emb[i] < with_emb[len(EASY) + i], texts[i]
    # The classifier's cascade embeds the first EMB_TOKENS tokens of this text.
    assert embedding_input("  a\x00b  " + "x" * 5000).startswith("a b")
    assert len(embedding_input("y" * 5000)) == EMB_TOKENS * 16


@pytest.mark.parametrize(
    "odd",
    [None, np.ones(100), np.full(EMB_DIM, np.nan), np.zeros(EMB_DIM), "text"],
    ids=["none", "short", "nan", "zero", "str"],
)
def test_unusable_embedding_scores_by_the_text_path(
    builtin: DifficultyScorer, odd: object
) -> None:
    assert builtin.score(HARD[0], odd) == builtin.score(HARD[0])


def test_embedding_eval_times_the_encoder_call(
    builtin: DifficultyScorer, encoder: OnnxEncoder
) -> None:
    rows = _costq_rows(12)
    text_report, _ = evaluate_scorer(builtin, rows)
    emb_report, scores = evaluate_scorer(builtin, rows, encoder)
    assert (text_report["path"], emb_report["path"]) == ("text", "embedding")
    assert emb_report["latency_ms"]["p50"] > text_report["latency_ms"]["p50"]
    assert all(0.0 < p < 1.0 for p in scores)


def test_knob_is_monotone_from_never_to_always(builtin: DifficultyScorer) -> None:
    assert builtin.strong_threshold_for(0.0) == 1.0
    assert builtin.strong_threshold_for(1.0) == 0.0
    taus = [builtin.strong_threshold_for(c) for c in np.linspace(0, 1, 21)]
    assert all(a >= b for a, b in itertools.pairwise(taus))
    shares = [builtin.share_for(c) for c in np.linspace(0, 1, 21)]
    assert all(a <= b for a, b in itertools.pairwise(shares))
    assert 0.0 < builtin.threshold_for_share(0.5) < 1.0


def test_scoring_from_threads_matches_serial(builtin: DifficultyScorer) -> None:
    texts = [*EASY, *HARD] * 20
    serial = [builtin.score(t) for t in texts]
    results: dict[int, list[float]] = {}

    def work(k: int) -> None:
        results[k] = [builtin.score(t) for t in texts]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert all(results[k] == serial for k in range(4))


# --- metrics on a set with known answers -----------------------------------------


def _known_set() -> tuple[list[bool], list[bool]]:
    # 20 prompts only the strong model answers, 80 both answer: q_weak 0.8,
    # q_strong 1.0, and 100 rows put every grid point on a whole row count.
    weak = [False] * 20 + [True] * 80
    strong = [True] * 100
    return weak, strong


def test_metrics_of_a_perfect_router() -> None:
    weak, strong = _known_set()
    scores = [1.0] * 20 + [0.0] * 80
    curve = cost_quality_curve(scores, weak, strong)
    # PGR(k) = min(k, 20) / 20, averaged over k = 0..100.
    assert curve.apgr() == pytest.approx((10.5 + 80) / 101)
    assert curve.share_to_recover(0.5) == pytest.approx(0.10)
    assert curve.share_to_recover(0.8) == pytest.approx(0.16)
    assert curve.share_to_recover(0.95) == pytest.approx(0.19)
    assert curve.share_for_quality(0.95) == pytest.approx(0.15)


def test_metrics_of_a_backwards_router() -> None:
    weak, strong = _known_set()
    scores = [0.0] * 20 + [1.0] * 80
    curve = cost_quality_curve(scores, weak, strong)
    assert curve.apgr() == pytest.approx(10.5 / 101)
    assert curve.share_to_recover(0.5) == pytest.approx(0.90)
    assert curve.share_for_quality(0.95) == pytest.approx(0.95)


def test_report_shape_and_curve_ends() -> None:
    weak, strong = _known_set()
    report = curve_report(cost_quality_curve([1.0] * 20 + [0.0] * 80, weak, strong))
    assert set(report["cpt"]) == {"50", "80", "95"}
    first, last = report["curve"][0], report["curve"][-1]
    assert (first["strong_share"], first["quality"]) == (0.0, 0.8)
    assert (last["strong_share"], last["quality"]) == (1.0, 1.0)


def test_curve_rejects_mismatched_input() -> None:
    with pytest.raises(DifficultyError):
        cost_quality_curve([0.5], [True, False], [True, True])


# --- eval, predictions, training ---------------------------------------------------


def test_costq_eval_json_and_predictions(
    tmp_path: Path, builtin: DifficultyScorer, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _costq_rows()
    out = tmp_path / "pred.jsonl"
    run_costq_eval(None, rows, as_json=True, predictions=out)
    report = json.loads(capsys.readouterr().out)
    for key in ("apgr", "cpt", "strong_share_for_95pct_quality", "curve"):
        assert key in report
    assert set(report["baselines"]) == {"random", "length"}
    assert report["latency_ms"]["p50"] < 50
    assert report["apgr"] > report["baselines"]["random"]["apgr"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [p["id"] for p in lines] == [r["id"] for r in rows]
    assert all(set(p) == {"id", "hard_probability"} for p in lines)
    assert all(0 < p["hard_probability"] < 1 for p in lines)


def test_mixroute_eval_dispatches_costq_rows(tmp_path: Path) -> None:
    path = tmp_path / "costq.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _costq_rows()) + "\n")
    result = CliRunner().invoke(app, ["eval", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert "apgr" in json.loads(result.output)


def test_train_then_load_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "train.jsonl"
    rows = _costq_rows(60)
    path.write_text(
        "\n".join(json.dumps(r) for r in rows) + '\n{"prompt": "unlabelled"}\n'
    )
    out = tmp_path / "head.npz"
    train_difficulty_cli(None, path, out)
    assert "60 rows" in capsys.readouterr().out
    scorer = DifficultyScorer.load(out)
    hard = scorer.score(HARD[0] + " (0)")
    easy = scorer.score(EASY[1] + " (1)")
    assert hard > easy


def _synthetic_embeddings(rows: list[dict[str, Any]]) -> np.ndarray:
    # Hard rows lean one way along the first axis, easy ones the other.
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(len(rows), EMB_DIM))
    emb[:, 0] += [3.0 if not r["weak_correct"] else -3.0 for r in rows]
    out: np.ndarray = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    return out


def test_embedding_head_round_trip(tmp_path: Path) -> None:
    rows = _costq_rows(60)
    for i, r in enumerate(rows):
        r["subject"] = "algebra" if i % 2 else "marketing"
    emb = _synthetic_embeddings(rows)
    scorer, oof = fit_scorer(rows, embeddings=emb)
    assert scorer.uses_embedding and oof.shape == (60,)
    assert "embedding_apgr=" in scorer.provenance
    scorer.save(tmp_path / "h.npz")
    loaded = DifficultyScorer.load(tmp_path / "h.npz")
    assert loaded.topic is not None and set(loaded.topic.names) == {
        "algebra",
        "marketing",
    }
    for r, e in zip(rows[:8], emb[:8], strict=True):
        text = str(r["prompt"])
        assert loaded.score(text, e) == pytest.approx(scorer.score(text, e), abs=1e-3)
        assert loaded.score(text) == pytest.approx(scorer.score(text), abs=1e-3)
    hard = [loaded.score(str(r["prompt"]), e) for r, e in zip(rows, emb, strict=True)]
    is_hard = np.array([not r["weak_correct"] for r in rows])
    assert np.mean(np.array(hard)[is_hard]) > np.mean(np.array(hard)[~is_hard])


def test_embeddings_must_match_the_rows() -> None:
    with pytest.raises(DifficultyError, match="embeddings must be"):
        fit_scorer(_costq_rows(40), embeddings=np.zeros((39, EMB_DIM)))


def test_word_model_alone_still_loads_and_scores(tmp_path: Path) -> None:
    # topic_terms=0 writes the earlier artifact format: the word model with its
    # Platt calibration; such files keep working and ignore an embedding.
    scorer, _ = fit_scorer(_costq_rows(60), TrainSettings(topic_terms=0))
    scorer.save(tmp_path / "old.npz")
    loaded = DifficultyScorer.load(tmp_path / "old.npz")
    assert loaded.topic is None and not loaded.uses_embedding
    assert loaded.emb_tokens is None
    emb = np.ones(EMB_DIM) / np.sqrt(EMB_DIM)
    assert loaded.score(HARD[0], emb) == loaded.score(HARD[0])
    a, b = loaded.calibration
    for text in (HARD[0], EASY[1]):
        expected = 1.0 / (1.0 + np.exp(-(a * loaded.logit(text) + b)))
        assert loaded.score(text) == pytest.approx(expected)


def test_near_copies_share_a_fold() -> None:
    texts = [
        "What is 2+2?\nA. 3\nB. 4\nAnswer:",
        "What is 2 + 2 ?\nA. 4\nB. 5\nAnswer:",
        "Name a prime.\nA. 4\nB. 7\nAnswer:",
        "A word problem with no options.",
    ]
    groups = duplicate_groups(texts)
    assert groups[0] == groups[1]
    assert len({int(groups[0]), int(groups[2]), int(groups[3])}) == 3
    for seed in range(5):
        folds = grouped_folds(texts * 10, 5, seed)
        assert len(set(folds[[0, 1, 4, 5, 8, 9]])) == 1


def test_fit_needs_enough_rows() -> None:
    with pytest.raises(DifficultyError, match="at least"):
        fit_scorer(_costq_rows(8), TrainSettings())


def test_broken_artifact_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(DifficultyError, match="cannot be read"):
        DifficultyScorer.load(bad)


def test_mixroute_train_dispatches_costq_rows(tmp_path: Path) -> None:
    path = tmp_path / "costq.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in _costq_rows(60)) + "\n")
    out = tmp_path / "difficulty.npz"
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert DifficultyScorer.load(out).score(HARD[1]) > 0


def test_smoothing_moves_labels_toward_their_training_group() -> None:
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0])
    groups = ["a", "a", "a", "b", "c"]
    train = np.array([0, 1, 2, 3])
    smoothed = smooth_labels(y, groups, train, 0.5)
    # group a's rate is 1/3; b's is its own label; c is unseen in train.
    assert smoothed == pytest.approx([2 / 3, 1 / 6, 1 / 6, 1.0, 1.0])
    assert smooth_labels(y, groups, train, 0.0) is y


def test_classifier_hands_its_cascade_embedding_to_the_scorer(
    onnx: Any, builtin: DifficultyScorer, encoder: OnnxEncoder
) -> None:
    # Each classification's hard_probability is the text path's score, or,
    # where the cascade embedded the prompt, the embedding path's.
    from mixroute.classify.text import clean

    # Questions the text stage is unsure of (so the cascade embeds them).
    unsure = [
        "Which treaty ended the Thirty Years War?\nA. Westphalia\nB. Utrecht\n"
        "C. Versailles\nD. Paris\nAnswer:",
        "An auditor finds that a client has not recorded a liability. What should "
        "the auditor do first?\nA. Resign\nB. Discuss it with management\n"
        "C. Report to the police\nD. Ignore it\nAnswer:",
    ]
    paths = []
    for text in [*EASY, *HARD, *unsure]:
        c = onnx.classify(text)
        window = clean(text, onnx.settings.max_chars)
        emb = encoder.embed([embedding_input(window)], EMB_TOKENS)[0]
        by_text, by_emb = builtin.score(window), builtin.score(window, emb)
        if c.hard_probability == pytest.approx(by_text, abs=1e-9):
            paths.append("text")
        else:
            assert c.hard_probability == pytest.approx(by_emb, abs=1e-4), text
            paths.append("embedding")
    assert "embedding" in paths, "no prompt went through the cascade"
