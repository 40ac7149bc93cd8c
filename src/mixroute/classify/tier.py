"""Complexity without training: a hand-set logistic score of visible signals.

``hard_probability`` estimates how likely a cheap model is to fail the prompt.
With no trained difficulty scorer it is ``sigmoid(sum of weights)`` over:

- length: log of the number of words (long, multi-part asks are harder);
- structure: numbered or bulleted sub-questions, several question marks;
- code: fences, definitions, braces/semicolons, stack traces;
- maths: LaTeX, operators between numbers, "prove", "integral", ...;
- constraint words: "step by step", "optimize", "edge cases", "without using";
- the route's prior: maths, code and reasoning start harder than
  summarisation, classification or open questions.

The weights are round numbers chosen by reading prompts, not fitted; the
tiers are cut with ``classifier.tiers.medium`` / ``.complex``. When the trained
scorer in ``mixroute.classify.difficulty`` is installed and loads, it is used
instead (see ``Classifier``).
"""

from __future__ import annotations

import math
import re

from mixroute.classify.base import Tier

_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+|#include|\bfunction\b|=>|\bimport \w+|"
    r"\bpublic static\b|Traceback|\bSELECT\b.+\bFROM\b|[;{}]\s*$",
    re.MULTILINE,
)
_MATH = re.compile(
    r"\\(frac|sqrt|int|sum|begin|cdot|le|ge|pi)|\$[^$]+\$|\d\s*[-+*/^=]\s*\d|"
    r"\b(prove|integral|derivative|theorem|matrix|probability|eigen\w*|lemma)\b",
    re.IGNORECASE,
)
_STRUCTURE = re.compile(r"^\s*(\d+[.)]|[-*•]|\([a-z]\))\s+", re.MULTILINE)
_CONSTRAINTS = re.compile(
    r"\b(step by step|optimi[sz]e|edge cases?|efficient|complexity|without using|"
    r"at least|exactly|must|constraints?|rigorous|in detail|trade-?offs?)\b",
    re.IGNORECASE,
)
ROUTE_PRIOR = {
    "math": 0.6,
    "code": 0.5,
    "reasoning": 0.5,
    "stem": 0.2,
    "humanities": 0.0,
    "creative": -0.2,
    "roleplay": -0.3,
    "extraction": -0.3,
    "closed_qa": -0.6,
    "open_qa": -0.7,
    "summarization": -0.7,
    "classification": -0.9,
    "brainstorming": -0.6,
}


def heuristic_hard_probability(text: str, route: str) -> float:
    """The chance (0..1) that a cheap model fails ``text``, from visible signals."""
    words = len(text.split())
    score = -1.5 + ROUTE_PRIOR.get(route, 0.0)
    score += 0.35 * math.log1p(words / 20)
    score += 0.25 * min(len(_STRUCTURE.findall(text)), 6) / 2
    score += 0.2 * min(text.count("?"), 4) / 2
    score += 0.5 * min(len(_CODE.findall(text)), 4) / 2
    score += 0.45 * min(len(_MATH.findall(text)), 6) / 3
    score += 0.3 * min(len(_CONSTRAINTS.findall(text)), 4) / 2
    return 1.0 / (1.0 + math.exp(-score))


def tier_of(hard_probability: float, medium: float, complex_: float) -> Tier:
    """Cut ``hard_probability`` into a tier at the configured thresholds."""
    if hard_probability >= complex_:
        return "complex"
    if hard_probability >= medium:
        return "medium"
    return "simple"
