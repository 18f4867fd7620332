"""Suspected label errors: cleanlab's confident learning on out-of-fold predicted probabilities.

The probabilities come from a cross-validated logistic regression on the frozen backbone's features (the same
cached features the features scenario trains on), so every image is scored by a model that never saw it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


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
    """(images, classes) probabilities, each row from a model fitted on the other folds (stratified; folds are
    capped by the smallest class, which must have two images)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels).min()) if len(labels) else 0
    splits = StratifiedKFold(min(folds, smallest), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
    return cross_val_predict(model, features, labels, cv=splits, method="predict_proba")


def find_label_issues(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> LabelIssues:
    """Rank suspected label errors (cleanlab ``find_label_issues``, ranked by self-confidence) and suggest the
    class the out-of-fold model prefers. ``labels`` are class indices 0..k-1, every class present twice."""
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from cleanlab.rank import get_label_quality_scores

    probabilities = out_of_fold_probabilities(features, labels, folds, seed)
    # "both" (noise-rate pruning and confident-learning agree) flagged fewer clean images at the same recall than
    # cleanlab's default on Fashion-MNIST (README, "Data health")
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
