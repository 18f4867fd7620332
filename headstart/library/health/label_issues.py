"""Suspected label errors: cleanlab's confident learning on out-of-fold predicted probabilities.

The probabilities come from a cross-validated linear head on the frozen backbone's features (the same cached
features the features scenario trains on), so every image is scored by a model that never saw it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from headstart.ground.params import Params
from headstart.library.training.linear_probe import fit_head

# The probe's own settings (measured on Fashion-MNIST, docs/data-health.md, "Label issues"), not the run's train.* ones.
PROBE = Params(train={"head_epochs": 100, "head_lr": 0.003, "weight_decay": 0.02, "label_smoothing": 0.0})


@dataclass(frozen=True)
class LabelIssues:
    """Images whose given label the out-of-fold model doubts, most doubtful first."""

    checked: int  # images scored
    issues: list[dict] = field(default_factory=list)  # {row, label, suggested, label_quality}

    @property
    def fraction(self) -> float:
        """Share of the checked images flagged."""
        return len(self.issues) / self.checked if self.checked else 0.0

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {**asdict(self), "fraction": round(self.fraction, 4)}


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """(images, classes) probabilities, each row from a linear head fitted on the other folds (stratified; folds
    are capped by the smallest class, which must have two images).

    The head is fitted with :func:`fit_head` (full-batch AdamW, what the hybrid scenario's probe uses): on 8,000
    images it took 3.5 s against 36 s for scikit-learn's LogisticRegression, flagging as well (docs/data-health.md).
    """
    from sklearn.model_selection import StratifiedKFold

    standardised = ((features - features.mean(0)) / (features.std(0) + 1e-6)).astype(np.float32)
    classes = int(labels.max()) + 1
    smallest = int(np.bincount(labels).min())
    probabilities = np.zeros((len(labels), classes), np.float32)
    splits = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed)
    for train, held_out in splits.split(standardised, labels):
        torch.manual_seed(seed)
        head = nn.Linear(standardised.shape[1], classes)
        fit_head(head, standardised[train], labels[train].astype(np.int64), PROBE)
        with torch.inference_mode():
            probabilities[held_out] = torch.softmax(head(torch.from_numpy(standardised[held_out])), 1).numpy()
    return probabilities


def find_label_issues(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> LabelIssues:
    """Rank suspected label errors (cleanlab ``find_label_issues``, ranked by self-confidence) and suggest the
    class the out-of-fold model prefers. ``labels`` are class indices 0..k-1, every class present twice."""
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from cleanlab.rank import get_label_quality_scores

    probabilities = out_of_fold_probabilities(features, labels, folds, seed)
    # "both" (noise-rate pruning and confident-learning agree) flagged fewer clean images at the same recall than
    # cleanlab's default on Fashion-MNIST (docs/data-health.md, "Label issues")
    ranked = cleanlab_issues(
        labels, probabilities, filter_by="both", return_indices_ranked_by="self_confidence", n_jobs=1
    )
    quality = get_label_quality_scores(labels, probabilities)
    issues = [
        {
            "row": int(i),
            "label": int(labels[i]),
            "suggested": int(probabilities[i].argmax()),
            "label_quality": round(float(quality[i]), 4),
        }
        for i in ranked
    ]
    return LabelIssues(len(labels), issues)
