"""Difficulty: how likely a cheap model fails a prompt, and what routing on it buys.

The scorer stacks, with a small logistic regression, a word model (logistic over
the prompt's TF-IDF unigrams and bigrams plus a few structural counts: length,
numbers, arithmetic operators, answer options) and a topic model (naive Bayes
naming the MMLU subject or source, read as that topic's rate of needing the
strong model). When the caller passes the prompt's MiniLM embedding (the route
classifier's cascade computes exactly the one it was trained on), an embedding
head adds two more inputs: a logistic over the embedding and a softmax naming
the topic from it. The scorer never runs the encoder itself: on this machine an
encoder call costs 10-30 ms, the text path well under a millisecond. It needs
numpy only and holds no state between calls, so one instance serves every
thread.

The label it learns is RouteLLM's: a prompt *needs the strong model* when the
weak model got it wrong and the strong one got it right. Ranking prompts by that
probability is what recovers the quality gap with the fewest strong calls (a
prompt both models fail gains nothing from the dearer call); ``score`` returns
it calibrated, as ``hard_probability``. Whether one model got one question right
is a noisy draw, so in training each MMLU label is moved toward its subject's
rate (``TrainSettings.smoothing``); rows with no subject keep their own label.

Routing evaluation follows RouteLLM: sort prompts by score, send the top share
to the strong model, and measure quality (the share answered correctly by the
model chosen) against that share. APGR is the mean over a 101-point grid of
shares of the performance gap recovered ``(q - q_weak) / (q_strong - q_weak)``;
CPT(x) is the smallest share recovering x of the gap.

The package: ``scorer`` (features, ``DifficultyScorer``), ``training`` (numpy
logistic regression, calibration, the knob table), ``metrics`` (the curve,
APGR, CPT) and ``commands`` (``mixroute eval`` / ``mixroute train`` on
cost-quality rows).
"""

from __future__ import annotations

from mixroute.classify.difficulty.commands import (
    baseline_reports,
    embed_prompts,
    evaluate_scorer,
    has_difficulty_labels,
    run_costq_eval,
    train_difficulty_cli,
)
from mixroute.classify.difficulty.metrics import (
    CostQualityCurve,
    cost_quality_curve,
    curve_report,
)
from mixroute.classify.difficulty.scorer import (
    BUILTIN_PATH,
    EMB_DIM,
    EMB_TOKENS,
    GRID,
    N_DENSE,
    DifficultyError,
    DifficultyScorer,
    EmbeddingHead,
    TopicModel,
    dense_features,
    embedding_input,
    terms,
)
from mixroute.classify.difficulty.training import (
    TrainSettings,
    build_vocabulary,
    duplicate_groups,
    fit_scorer,
    grouped_folds,
    labels,
    smooth_labels,
)

__all__ = [
    "BUILTIN_PATH",
    "EMB_DIM",
    "EMB_TOKENS",
    "GRID",
    "N_DENSE",
    "CostQualityCurve",
    "DifficultyError",
    "DifficultyScorer",
    "EmbeddingHead",
    "TopicModel",
    "TrainSettings",
    "baseline_reports",
    "build_vocabulary",
    "cost_quality_curve",
    "curve_report",
    "dense_features",
    "duplicate_groups",
    "embed_prompts",
    "embedding_input",
    "evaluate_scorer",
    "fit_scorer",
    "grouped_folds",
    "has_difficulty_labels",
    "labels",
    "run_costq_eval",
    "smooth_labels",
    "terms",
    "train_difficulty_cli",
]
