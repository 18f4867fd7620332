"""The health check of a split's training data: suspected label errors, drift from the champion's training data,
and the reference sample the next run's drift is measured against.

Features are the frozen backbone's at ``health.input_size`` (96 px: 1/9 of the work of the 224 px the features
scenario trains on, with the same label-issue recall, docs/data-health.md), kept in the feature store like the
training features; ``null`` shares the features scenario's own entries instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from headstart.ground.errors import HeadstartError
from headstart.ground.params import Params
from headstart.ground.run_folder import HEALTH_REFERENCE
from headstart.library.data.manifest import scan_dataset
from headstart.library.data.split import SplitResult
from headstart.library.health.drift import measure_drift
from headstart.library.health.label_issues import find_label_issues
from headstart.library.health.reference import SAMPLE, Reference, from_bytes, sample_reference
from headstart.library.health.report import HealthReport, judge
from headstart.library.registry.registry import Registry
from headstart.library.training.feature_store import Extractor
from headstart.library.training.features import extract, frozen_backbone, training_features

log = logging.getLogger(__name__)


def examine(split: SplitResult, params: Params, registry: Registry | None) -> tuple[HealthReport, Reference | None]:
    """The health report of the split's train and val rows, and their reference sample (None when neither label
    issues nor drift are asked for: no features are extracted then)."""
    health = params.health
    if not (health.label_issues or health.drift):
        return judge(health, split.duplicates, None, None), None
    model, extractor = health_extractor(params)
    rows, features = training_features(model, split.table, extractor, params)
    classes = sorted(split.table["label"].unique())
    labels = rows["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    reference = sample_reference(features.features, labels, classes, extractor.to_dict(), params.train.seed)
    issues = _label_issues(rows, features.features, labels, classes, params) if health.label_issues else None
    drift = _drift(registry, reference, features.features, labels, params) if health.drift else None
    return judge(health, split.duplicates, issues, drift), reference


def health_extractor(params: Params) -> tuple[nn.Module, Extractor]:
    """The frozen backbone the health step extracts with (``health.input_size``, else ``model.features_input_size``;
    ``model.feature_stages``) and the identity of its features. A network that takes only its pretrained size
    (ViT, DeiT, Swin) gets that size instead of ``health.input_size``."""
    m, size = params.model, params.health.input_size
    if size is None:
        return frozen_backbone(m.backbone, m.weights, m.features_input_size, m.head.pool, m.feature_stages)
    return frozen_backbone(m.backbone, m.weights, size, m.head.pool, m.feature_stages, preferred_size=True)


def _label_issues(
    rows: pd.DataFrame, features: np.ndarray, labels: np.ndarray, classes: list[str], params: Params
) -> dict:
    present = sorted(set(labels.tolist()))  # classes with training images (a class may be only in the test set)
    counts = np.bincount(labels)[present]
    if len(present) < 2 or counts.min() < 2:
        why = "fewer than 2 classes" if len(present) < 2 else "a class has fewer than 2 training images"
        return {"checked": 0, "fraction": 0.0, "issues": [], "skipped": why}
    compact = np.searchsorted(present, labels)  # labels 0..len(present)-1 for the probe and cleanlab
    h = params.health
    found = find_label_issues(features, compact, h.label_folds, params.train.seed, h.probe_precision)
    classes = [classes[i] for i in present]
    issues = [
        {
            "file": rows.at[issue["row"], "file"],
            "label": classes[issue["label"]],
            "suggested": classes[issue["suggested"]],
            "label_quality": issue["label_quality"],
        }
        for issue in found.issues
    ]
    log.info("label issues: %d of %d images (%.1f%%) look mislabeled (probe fitted in %s)", len(issues),
             found.checked, 100 * found.fraction, found.precision)  # fmt: skip
    return {"checked": found.checked, "fraction": round(found.fraction, 4), "precision": found.precision,
            "issues": issues}  # fmt: skip


def champion_reference(registry: Registry) -> tuple[str | None, Reference | str]:
    """(champion, its drift reference) or (champion or None, why there is none to compare with)."""
    try:
        champion = registry.champion()
        data = registry.read_file(champion, HEALTH_REFERENCE) if champion else None
    except HeadstartError as exc:  # drift is informational: an unreadable registry is reported, not fatal here
        log.warning("drift not measured: %s", exc)
        return None, f"registry unreadable: {exc}"
    if champion is None:
        return None, "no champion yet"
    if data is None:
        return champion, f"champion {champion} was registered without a drift reference"
    try:
        return champion, from_bytes(data)
    except ValueError as exc:
        return champion, f"champion {champion}'s drift reference is unreadable ({exc})"


def compare(theirs: Reference, champion: str, features: np.ndarray, labels: list[str], params: Params) -> dict:
    """Drift of ``features`` (with class names ``labels``) from the champion's reference sample."""
    if features.shape[1] != theirs.features.shape[1]:
        return {"skipped": f"champion {champion}'s features are {theirs.features.shape[1]} wide, ours "
                f"{features.shape[1]}", "champion": champion}  # fmt: skip
    classes = sorted(set(theirs.classes) | set(labels))
    index = {c: i for i, c in enumerate(classes)}
    their_labels = np.array([index[theirs.classes[i]] for i in theirs.labels], dtype=np.int64)
    our_labels = np.array([index[c] for c in labels], dtype=np.int64)
    report = measure_drift(
        theirs.features, their_labels, features, our_labels, classes, params.health.drift_permutations,
        params.train.seed,
    )  # fmt: skip
    if not (np.isfinite(report.mmd2) and np.isfinite(report.p_value)):
        return {"skipped": "the MMD is not finite (non-finite features?)", "champion": champion}
    log.info("drift from champion %s: MMD² %.4g, p=%.3g", champion, report.mmd2, report.p_value)
    return {**report.to_dict(), "champion": champion}


def _usable(champion: str | None, theirs: Reference | str, extractor: dict) -> Reference | dict:
    """The champion's reference when its features live in ``extractor``'s space; else ``{"skipped": why}``."""
    if isinstance(theirs, str):
        return {"skipped": theirs, "champion": champion}
    if not theirs.comparable_to(extractor):
        return {"skipped": f"champion {champion} used another backbone, weights or preprocessing", "champion": champion}
    return theirs


def _drift(
    registry: Registry | None, reference: Reference, features: np.ndarray, labels: np.ndarray, params: Params
) -> dict:
    """The champion's reference sample against these features; ``{"skipped": why}`` when there is none to use."""
    if registry is None:
        return {"skipped": "no registry"}
    champion, found = champion_reference(registry)
    theirs = _usable(champion, found, reference.extractor)
    if isinstance(theirs, dict):
        return theirs
    return compare(theirs, champion, features, [reference.classes[i] for i in labels], params)


def drift_of_folder(folder: Path, params: Params, registry: Registry, sample: int = SAMPLE) -> dict:
    """Drift of a class-per-folder dataset (a seeded sample of ``sample`` images) from the champion's training
    data, before any run: what the data watcher puts in its event. ``{"skipped": why}`` when it cannot be
    measured (no champion, no reference, another backbone, unreadable images)."""
    champion, found = champion_reference(registry)
    if isinstance(found, str):  # known before the backbone is loaded
        return {"skipped": found, "champion": champion}
    model, extractor = health_extractor(params)
    theirs = _usable(champion, found, extractor.to_dict())
    if isinstance(theirs, dict):
        return theirs
    entries, _, _ = scan_dataset(folder)
    rows = [{"file": str(folder / e.relpath), "label": e.label} for e in entries if e.problem is None]
    # regular files only (is_file is False for a FIFO or socket): nothing here may block the watcher
    table = pd.DataFrame([r for r in rows if Path(r["file"]).is_file()], columns=["file", "label"])
    if table.empty:
        return {"skipped": f"{folder}: no images", "champion": champion}
    table = table.sample(min(sample, len(table)), random_state=params.train.seed).reset_index(drop=True)
    try:
        features = extract(model, table, extractor, params.evaluate.batch_size, 0, params.train.device)
    except (OSError, ValueError) as exc:  # an unreadable image: the run's validation will name it
        return {"skipped": f"features not extracted ({exc})", "champion": champion}
    return compare(theirs, champion, features, table["label"].tolist(), params)
