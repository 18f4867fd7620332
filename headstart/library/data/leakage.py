"""Near duplicates in a split: training copies of test images (leakage) and look-alikes inside the training data.

A training image that is a resized, re-encoded, shifted or brightened copy of a test image makes the test score
a memory test. Per ``health.leakage`` such rows are dropped from train/val (default), stop the run, or are kept
with a warning; they are listed either way. Inside the training data, near duplicates within one class are
counted (harmless but over-weighted), those across classes are named: the same picture under two labels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from headstart.ground.errors import DataError
from headstart.ground.params import HealthParams
from headstart.library.data.near_duplicates import candidate_index, index, near_duplicates, thumbnails

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DuplicateReport:
    """What the near-duplicate search found in one split table, and what was done about it."""

    policy: str
    leaks: list[dict] = field(default_factory=list)  # {file, split, label, test_file, test_label, similarity}
    dropped: list[str] = field(default_factory=list)  # train/val files removed (policy drop)
    within_class: dict[str, int] = field(default_factory=dict)  # near-duplicate pairs per class (train + val)
    across_classes: list[dict] = field(default_factory=list)  # {file, label, other_file, other_label, similarity}
    searched_within: bool = False

    def to_dict(self) -> dict:
        """JSON-friendly form (``near_duplicates.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DuplicateReport:
        """Inverse of :func:`to_dict`."""
        return cls(**data)

    def summary(self) -> str:
        """One line for the log and the run summary."""
        within = sum(self.within_class.values())
        inside = f"; {within} same-class and {len(self.across_classes)} cross-class pairs inside the training data"
        return (
            f"{len(self.leaks)} pair(s) of a training image and a near-duplicate test image ({self.policy}: "
            f"{len(self.dropped)} dropped)" + (inside if self.searched_within else "")
        )


def find_duplicates(
    table: pd.DataFrame, params: HealthParams, workers: int = 4, known: Mapping[str, np.ndarray] | None = None
) -> DuplicateReport:
    """Search a split table (``file``, ``label``, ``split``) for leaks into the test split and, when
    ``params.within_duplicates``, for near duplicates inside train + val. ``known``: thumbnails by file, as the
    validator took them (the rest are decoded)."""
    is_test = (table["split"] == "test").to_numpy()
    grids = thumbnails(table["file"].tolist(), workers, known)
    training, test = table[~is_test].reset_index(drop=True), table[is_test].reset_index(drop=True)
    training_grids = grids[~is_test]
    training_index = index(training_grids)  # built once: both searches query it
    thresholds = (params.duplicate_similarity, params.duplicate_edge_similarity)
    with ThreadPoolExecutor(max_workers=1) as builder:
        # the within search's index is built on the second core during the leak search
        lists = builder.submit(candidate_index, training_index.spectra) if params.within_duplicates else None
        leaks = [
            {
                "file": training.at[d.query, "file"],
                "split": training.at[d.query, "split"],
                "label": training.at[d.query, "label"],
                "test_file": test.at[d.match, "file"],
                "test_label": test.at[d.match, "label"],
                "similarity": round(d.similarity, 4),
            }
            for d in near_duplicates(training_grids, grids[is_test], *thresholds, query_index=training_index)
        ]
        within_pairs = []
        if lists is not None:
            within_pairs = near_duplicates(
                training_grids, training_grids, *thresholds, within=True, pool_index=training_index,
                pool_candidates=lists.result(),
            )  # fmt: skip
    within: dict[str, int] = {}
    across: list[dict] = []
    files, labels = training["file"].to_numpy(), training["label"].to_numpy()  # not a pandas row per pair
    for d in within_pairs:
        label, other = labels[d.query], labels[d.match]
        if label == other:
            within[label] = within.get(label, 0) + 1
        else:
            across.append(
                {
                    "file": files[d.query],
                    "label": label,
                    "other_file": files[d.match],
                    "other_label": other,
                    "similarity": round(d.similarity, 4),
                }
            )
    dropped = sorted({leak["file"] for leak in leaks}) if params.leakage == "drop" else []
    return DuplicateReport(
        params.leakage, leaks, dropped, dict(sorted(within.items())), across, params.within_duplicates
    )


def apply_policy(table: pd.DataFrame, report: DuplicateReport) -> pd.DataFrame:
    """The split table without the dropped training copies (unchanged for ``fail`` and ``warn``)."""
    if report.leaks and report.policy == "warn":
        log.warning("kept %d training near-duplicate(s) of test images (health.leakage=warn)", len(report.leaks))
    kept = table[~table["file"].isin(set(report.dropped))].reset_index(drop=True)
    lost = sorted(set(table.loc[table["split"] == "train", "label"]) - set(kept.loc[kept["split"] == "train", "label"]))
    if lost:
        raise DataError(
            f"dropping training near duplicates of test images left class(es) {lost} without a training image "
            "(they are copies of the test set: add other images, or set health.leakage=warn to keep them)"
        )
    return kept


def save_report(report: DuplicateReport, path: Path) -> None:
    """Write ``near_duplicates.json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))


def load_report(path: Path) -> DuplicateReport | None:
    """The report as written, or None when the run has none."""
    return DuplicateReport.from_dict(json.loads(path.read_text())) if path.is_file() else None
