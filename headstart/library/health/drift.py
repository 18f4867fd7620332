"""Drift between the data a champion was trained on and a new data version, on backbone features.

A two-sample MMD test (Gaussian kernel, median-heuristic bandwidth, unbiased MMD², permutation p-value) on up to
``MAX_SAMPLES`` feature vectors a side, a chi-square test of the class distribution, and each class's centroid
shift (cosine distance between the class means). alibi-detect has an MMD detector, but it pulls in transformers,
numba and OpenCV (measured: 18 packages); the test itself is a few lines of NumPy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MAX_SAMPLES = 1000  # per side: the kernel matrix is (2 x MAX_SAMPLES)², each permutation re-sums it


@dataclass(frozen=True)
class DriftReport:
    """How far the new data's features moved from the reference's."""

    mmd2: float  # unbiased MMD² (0: same distribution)
    p_value: float  # permutation p-value of the MMD²
    permutations: int
    reference_images: int
    current_images: int
    class_chi2: float | None = None  # chi-square statistic of the class counts (None: class sets differ)
    class_p_value: float | None = None
    centroid_shift: dict[str, float] = field(default_factory=dict)  # per class: cosine distance of the means

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)


def _subsample(features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(features) <= MAX_SAMPLES:
        return features
    return features[rng.choice(len(features), MAX_SAMPLES, replace=False)]


def mmd_permutation_test(
    reference: np.ndarray, current: np.ndarray, permutations: int = 500, seed: int = 0
) -> tuple[float, float]:
    """(unbiased MMD², permutation p-value) of two samples of feature vectors."""
    rng = np.random.default_rng(seed)
    x, y = _subsample(reference, rng), _subsample(current, rng)
    pooled = np.concatenate([x, y]).astype(np.float64)
    squared = np.sum(pooled**2, 1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * pooled @ pooled.T, 0)
    bandwidth = np.median(distances[np.triu_indices(len(pooled), 1)]) or 1.0
    kernel = np.exp(-distances / bandwidth)
    np.fill_diagonal(kernel, 0)  # unbiased: no self-similarity terms
    n, m = len(x), len(y)
    # every labelling at once: column 0 the observed one, then the permutations (one matrix product)
    first = np.arange(n + m) < n
    labellings = np.stack([first] + [rng.permutation(first) for _ in range(permutations)], axis=1).astype(np.float64)
    k_x = kernel @ labellings  # (n + m, labellings): each image's kernel sum over that labelling's x side
    k_all = kernel.sum(1, keepdims=True)
    xx = np.sum(labellings * k_x, 0) / (n * (n - 1))
    xy = np.sum((1 - labellings) * k_x, 0) / (n * m)
    yy = np.sum((1 - labellings) * (k_all - k_x), 0) / (m * (m - 1))
    statistics = xx + yy - 2 * xy
    observed = float(statistics[0])
    return observed, float((np.sum(statistics[1:] >= observed) + 1) / (permutations + 1))


def class_shift(reference: np.ndarray, current: np.ndarray, classes: list[str]) -> tuple[float, float]:
    """Chi-square test of independence between (reference, current) and class, from class indices."""
    from scipy.stats import chi2_contingency

    counts = np.array([np.bincount(reference, minlength=len(classes)), np.bincount(current, minlength=len(classes))])
    counts = counts[:, counts.sum(0) > 0]
    if counts.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(counts)
    return float(result.statistic), float(result.pvalue)


def centroid_shift(
    reference: np.ndarray, reference_labels: np.ndarray, current: np.ndarray, current_labels: np.ndarray,
    classes: list[str],
) -> dict[str, float]:  # fmt: skip
    """Per class present on both sides: 1 - cosine similarity of the two class means."""
    shifts = {}
    for index, name in enumerate(classes):
        a, b = reference[reference_labels == index], current[current_labels == index]
        if len(a) and len(b):
            mean_a, mean_b = a.mean(0), b.mean(0)
            cosine = mean_a @ mean_b / (np.linalg.norm(mean_a) * np.linalg.norm(mean_b) or 1.0)
            shifts[name] = round(float(1 - cosine), 5)
    return shifts


def measure_drift(
    reference: np.ndarray,
    reference_labels: np.ndarray,
    current: np.ndarray,
    current_labels: np.ndarray,
    classes: list[str],
    permutations: int = 500,
    seed: int = 0,
) -> DriftReport:
    """All three measures; labels are indices into ``classes`` (the same class list on both sides)."""
    mmd2, p_value = mmd_permutation_test(reference, current, permutations, seed)
    chi2, chi2_p = class_shift(reference_labels, current_labels, classes)
    shifts = centroid_shift(reference, reference_labels, current, current_labels, classes)
    return DriftReport(
        round(mmd2, 6), round(p_value, 6), permutations, len(reference), len(current), chi2, chi2_p, shifts
    )
