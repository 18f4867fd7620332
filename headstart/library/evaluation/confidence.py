"""Paired bootstrap confidence intervals of a metric's difference between two models on the same test images.

Resampling is SciPy's (``scipy.stats.bootstrap`` with ``paired=True``): each resample draws test images with
replacement and scores both models on the same draw, so the interval reflects the paired design (the two models'
errors on one image are correlated). BCa intervals up to 2,000 test images; above, percentile intervals, because
BCa's jackknife grows with the square of the test set (measured: 10 s for macro-F1 on 10,000 images, against
0.3 s on 1,000). The statistics are vectorised over resamples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

BCA_MAX_IMAGES = 2000


@dataclass(frozen=True)
class Interval:
    """A difference (challenger - champion) with its confidence interval."""

    metric: str
    difference: float
    low: float
    high: float
    confidence: float

    def describe(self) -> str:
        """``+0.0310 [+0.0170, +0.0450]`` for the decision table."""
        return f"{self.difference:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def macro_f1_batched(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 along the last axis, for any leading (resample) axes; classes absent from both truth and
    prediction count 0, as scikit-learn's ``f1_score(labels=range(n), zero_division=0)`` does."""
    scores = np.zeros(y_true.shape[:-1])
    for c in range(n_classes):
        is_true, is_pred = y_true == c, y_pred == c
        tp = (is_true & is_pred).sum(-1)
        denominator = is_true.sum(-1) + is_pred.sum(-1)
        scores += np.divide(2 * tp, denominator, out=np.zeros_like(scores), where=denominator > 0)
    return scores / n_classes


def paired_difference(
    metric: str,
    y_true: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    n_classes: int,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """The challenger's ``metric`` (accuracy | macro_f1) minus the champion's, with a paired BCa bootstrap
    interval. Class indices in, one entry per test image, both models on the same images in the same order."""
    from scipy.stats import bootstrap

    def score(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        if metric == "accuracy":
            return (truth == predicted).mean(-1)
        return macro_f1_batched(truth, predicted, n_classes)

    def statistic(truth: np.ndarray, new: np.ndarray, old: np.ndarray, axis: int = -1) -> np.ndarray:
        return score(truth, new) - score(truth, old)

    difference = float(statistic(y_true, challenger, champion))
    if np.array_equal(challenger, champion):  # no image tells the models apart: the interval is the point
        return Interval(metric, difference, difference, difference, confidence)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa on a near-degenerate resample distribution
        result = bootstrap(
            (y_true, challenger, champion),
            statistic,
            paired=True,
            vectorized=True,
            n_resamples=resamples,
            batch=100,  # bounds memory: 100 resamples x test images at a time (the jackknife too)
            confidence_level=confidence,
            method="BCa" if len(y_true) <= BCA_MAX_IMAGES else "percentile",
            rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):  # BCa undefined (e.g. one image differs): percentile
        low, high = np.quantile(result.bootstrap_distribution, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(metric, difference, float(low), float(high), confidence)
