"""Routing metrics after RouteLLM: the quality-versus-strong-share curve, APGR, CPT."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mixroute.classify.difficulty.scorer import GRID, DifficultyError, FloatArray


@dataclass(frozen=True)
class CostQualityCurve:
    """Quality and gap recovered when the top-scored share goes to the strong model.

    ``quality[k]`` is the share answered correctly when the ``k`` highest-scored
    prompts go to the strong model (``k`` = 0..n); ties are broken by a fixed
    pseudo-random order so equal scores are not sorted by file position.
    """

    quality: FloatArray
    thresholds: FloatArray
    weak_quality: float
    strong_quality: float

    @property
    def n(self) -> int:
        return len(self.quality) - 1

    @property
    def pgr(self) -> FloatArray:
        gap = self.strong_quality - self.weak_quality
        if gap <= 0:
            return np.ones_like(self.quality)
        return (self.quality - self.weak_quality) / gap

    def at_share(self, share: float) -> int:
        return round(share * self.n)

    def apgr(self) -> float:
        """Mean gap recovered over the 101-point grid of strong shares."""
        ks = [self.at_share(s) for s in np.linspace(0.0, 1.0, GRID)]
        return float(np.mean(self.pgr[ks]))

    def share_to_recover(self, part: float) -> float:
        """CPT: the smallest strong share that recovers ``part`` of the gap."""
        hit = np.nonzero(self.pgr >= part - 1e-12)[0]
        return float(hit[0]) / self.n if len(hit) else 1.0

    def share_for_quality(self, part_of_strong: float) -> float:
        """The smallest strong share reaching ``part_of_strong`` × strong-only
        quality."""
        hit = np.nonzero(self.quality >= part_of_strong * self.strong_quality - 1e-12)[
            0
        ]
        return float(hit[0]) / self.n if len(hit) else 1.0


def cost_quality_curve(
    scores: Sequence[float] | FloatArray,
    weak_correct: Sequence[bool] | npt.NDArray[np.bool_],
    strong_correct: Sequence[bool] | npt.NDArray[np.bool_],
    seed: int = 0,
) -> CostQualityCurve:
    """The curve from routing the highest ``scores`` to the strong model first."""
    s = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak_correct, dtype=np.float64)
    strong = np.asarray(strong_correct, dtype=np.float64)
    n = len(s)
    if n == 0 or len(weak) != n or len(strong) != n:
        raise DifficultyError("the curve needs as many scores as labelled rows (≥ 1)")
    tiebreak = np.random.default_rng(seed).random(n)
    order = np.lexsort((tiebreak, -s))
    gain = (strong - weak)[order]
    quality = weak.mean() + np.concatenate([[0.0], np.cumsum(gain)]) / n
    thresholds = np.concatenate([[1.0], s[order]])
    return CostQualityCurve(
        quality, thresholds, float(weak.mean()), float(strong.mean())
    )


def curve_report(curve: CostQualityCurve, points: int = 21) -> dict[str, Any]:
    """APGR, CPT(50/80/95), the share for 95 % of strong quality, and the curve
    at ``points`` evenly spaced strong shares."""
    pgr = curve.pgr
    table = []
    for share in np.linspace(0.0, 1.0, points):
        k = curve.at_share(float(share))
        table.append(
            {
                "strong_share": round(float(share), 4),
                "threshold": round(float(curve.thresholds[k]), 6),
                "quality": round(float(curve.quality[k]), 4),
                "pgr": round(float(pgr[k]), 4),
            }
        )
    return {
        "apgr": round(curve.apgr(), 4),
        "cpt": {
            str(p): round(curve.share_to_recover(p / 100), 4) for p in (50, 80, 95)
        },
        "strong_share_for_95pct_quality": round(curve.share_for_quality(0.95), 4),
        "weak_quality": round(curve.weak_quality, 4),
        "strong_quality": round(curve.strong_quality, 4),
        "curve": table,
    }
