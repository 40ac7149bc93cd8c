"""Difficulty: how likely a cheap model fails a prompt, and what routing on it buys.

The scorer is a calibrated logistic model over the prompt's words (unigrams and
bigrams, TF-IDF weighted) plus a few structural counts (length, numbers,
arithmetic operators, answer options). It needs numpy only, runs in well under a
millisecond, and holds no state between calls, so one instance serves every
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
    GRID,
    N_DENSE,
    DifficultyError,
    DifficultyScorer,
    dense_features,
    terms,
)
from mixroute.classify.difficulty.training import (
    TrainSettings,
    build_vocabulary,
    fit_scorer,
    labels,
    smooth_labels,
)

__all__ = [
    "BUILTIN_PATH",
    "GRID",
    "N_DENSE",
    "CostQualityCurve",
    "DifficultyError",
    "DifficultyScorer",
    "TrainSettings",
    "baseline_reports",
    "build_vocabulary",
    "cost_quality_curve",
    "curve_report",
    "dense_features",
    "evaluate_scorer",
    "fit_scorer",
    "has_difficulty_labels",
    "labels",
    "run_costq_eval",
    "smooth_labels",
    "terms",
    "train_difficulty_cli",
]
