"""Seeded stratified subsets of labelled rows: what a cost that would grow with the data is estimated on."""

from __future__ import annotations

import numpy as np


def stratified_rows(labels: np.ndarray, cap: int | None, seed: int, at_least: int = 1) -> np.ndarray:
    """Ascending indices of at most ``cap`` rows (all when they fit or ``cap`` is None), each label in proportion
    to its share, and every label at least ``min(its rows, at_least)`` times (so a rare class is never sampled
    away: scikit-learn's stratified splitters refuse a class of one row, or sample it to zero). A ``cap`` below
    what the floors need is raised to it. Rows left by rounding go to the classes furthest below their share; the
    choice within a class is seeded."""
    labels = np.asarray(labels)
    if cap is None or len(labels) <= cap:
        return np.arange(len(labels))
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    floor = np.minimum(counts, at_least)
    cap = max(cap, int(floor.sum()))
    share = cap * counts / len(labels)
    quota = np.clip(np.floor(share).astype(int), floor, counts)
    while quota.sum() < cap:  # hand out what rounding left, to the class furthest below its share with room
        k = int(np.argmax(np.where(quota < counts, share - quota, -np.inf)))
        quota[k] += 1
    while quota.sum() > cap:  # the floors took more than rounding gave: trim the largest quotas above their floor
        k = int(np.argmax(np.where(quota > floor, quota, -1)))
        quota[k] -= 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(inverse == k), q, replace=False) for k, q in enumerate(quota)]
    return np.sort(np.concatenate(picked))
