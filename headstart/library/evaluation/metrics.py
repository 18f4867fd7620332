"""Scoring a saved model on the test split: accuracy, macro-F1, per-class metrics, confusion matrix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from headstart.ground import progress
from headstart.ground.errors import DataError
from headstart.ground.run_folder import RunFolder

if TYPE_CHECKING:  # torch and scikit-learn load where a model is scored, not where its scores are read back
    import torch

    from headstart.library.models.saved_model import Predictor
    from headstart.library.training.feature_store import FeatureStore


@dataclass(frozen=True)
class Predictions:
    """Paired labels and predictions (class indices) with per-class probabilities."""

    y_true: np.ndarray
    y_pred: np.ndarray
    probabilities: np.ndarray


def predict_loader(predictor: Predictor, loader: torch.utils.data.DataLoader) -> Predictions:
    """Score every batch of a loader with a saved model (any scenario)."""
    truths, probs = [], []
    for images, targets in progress.iterate(loader, "scoring", len(loader)):
        probs.append(predictor.predict_proba(images))
        truths.append(targets.numpy())
    probabilities = np.concatenate(probs)
    return Predictions(np.concatenate(truths), probabilities.argmax(1), probabilities)


def compute_metrics(pred: Predictions, classes: list[str]) -> dict:
    """Overall and per-class metrics from scikit-learn, and the confusion matrix (rows = true class)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        pred.y_true, pred.y_pred, labels=labels, zero_division=0
    )
    macro_precision, macro_recall, _, _ = precision_recall_fscore_support(
        pred.y_true, pred.y_pred, labels=labels, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(pred.y_true, pred.y_pred)),
        "macro_f1": float(f1_score(pred.y_true, pred.y_pred, labels=labels, average="macro", zero_division=0)),
        "macro_precision": float(macro_precision),
        "macro_recall": float(macro_recall),
        "test_images": len(pred.y_true),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(pred.y_true, pred.y_pred, labels=labels).tolist(),
    }


@dataclass(frozen=True)
class Evaluation:
    """A model scored on the test split: the metrics and, per test image in split order, whether it was right."""

    metrics: dict
    actual: list[str]
    predicted: list[str]

    @property
    def correct(self) -> list[bool]:
        """Per test image: paired with another model's on the same split (McNemar)."""
        return [a == p for a, p in zip(self.actual, self.predicted, strict=True)]


def predict_from_store(predictor: Predictor, table: pd.DataFrame, store: FeatureStore, batch_size: int) -> Predictions:
    """Score a features-scenario model through the feature store: only images the store has not seen with this
    backbone's weights are run through it (an unchanged test set costs nothing on the next run)."""
    from headstart.library.models.classical import probabilities
    from headstart.library.training.features import extractor_of, features_for

    config = predictor.config
    extractor = extractor_of(predictor.network, config.backbone, config.pre, config.head["pool"], config.feature_stages)
    features = features_for(predictor.network, table, extractor, store, batch_size, 0).features
    proba = probabilities(predictor.classifier, features, len(config.classes))
    index = {name: i for i, name in enumerate(config.classes)}
    return Predictions(table["label"].map(index).to_numpy(), proba.argmax(1), proba)


def evaluate(
    model_dir: Path, split: pd.DataFrame, batch_size: int = 64, store: FeatureStore | None = None
) -> Evaluation:
    """Score the saved model on the ``test`` rows of the split (a features-scenario model through ``store``,
    when given)."""
    from headstart.library.data.loader import ImageTable, make_loader
    from headstart.library.data.transforms import build_transform
    from headstart.library.models.saved_model import load_predictor

    predictor = load_predictor(model_dir)
    config = predictor.config
    test = split[split["split"] == "test"]
    if test.empty:
        raise DataError("the split has no test images; raise split.test_fraction or set data.test_dir")
    unknown = sorted(set(test["label"]) - set(config.classes))
    if unknown:
        raise DataError(f"test classes {unknown} are not among the model's classes {config.classes}")
    if predictor.classifier is not None and store is not None:
        pred = predict_from_store(predictor, test, store, batch_size)
    else:
        loader = make_loader(ImageTable(test, config.classes, build_transform(config.pre)), batch_size, False, 0)
        pred = predict_loader(predictor, loader)
    names = config.classes
    return Evaluation(compute_metrics(pred, names), [names[i] for i in pred.y_true], [names[i] for i in pred.y_pred])


def save_evaluation(evaluation: Evaluation, run: RunFolder) -> None:
    """``metrics.json`` for ``dvc metrics`` and ``confusion.csv`` (actual, predicted) for ``dvc plots``."""
    run.root.mkdir(parents=True, exist_ok=True)
    run.metrics.write_text(json.dumps(evaluation.metrics, indent=2))
    table = pd.DataFrame({"actual": evaluation.actual, "predicted": evaluation.predicted})
    table.to_csv(run.confusion, index=False)


def load_evaluation(run: RunFolder) -> Evaluation:
    """What :func:`save_evaluation` wrote (for ``headstart step`` and resuming)."""
    if not run.metrics.is_file():
        raise DataError(f"{run.metrics}: not found; run the evaluate step first")
    table = pd.read_csv(run.confusion, dtype=str, keep_default_na=False)
    return Evaluation(json.loads(run.metrics.read_text()), table["actual"].tolist(), table["predicted"].tolist())
