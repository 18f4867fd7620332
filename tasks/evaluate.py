"""Scoring a saved model on the test split: accuracy, macro-F1, per-class metrics, confusion matrix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from headstart.errors import DataError
from tasks import progress
from tasks.augment import build_transform
from tasks.dataset import ImageTable, make_loader
from tasks.model_io import Predictor, load_predictor
from tasks.split import load_split

METRICS_FILE = "metrics.json"
CONFUSION_FILE = "confusion.csv"


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


def evaluate(model_dir: Path, split: pd.DataFrame, batch_size: int = 64) -> tuple[dict, Predictions]:
    """Score the saved model on the ``test`` rows of the split."""
    predictor = load_predictor(model_dir)
    config = predictor.config
    test = split[split["split"] == "test"]
    if test.empty:
        raise DataError("the split has no test images; raise split.test_fraction or set data.test_dir")
    unknown = sorted(set(test["label"]) - set(config.classes))
    if unknown:
        raise DataError(f"test classes {unknown} are not among the model's classes {config.classes}")
    loader = make_loader(ImageTable(test, config.classes, build_transform(config.pre)), batch_size, False, 0)
    pred = predict_loader(predictor, loader)
    return compute_metrics(pred, config.classes), pred


def save_metrics(metrics: dict, pred: Predictions, classes: list[str], out_dir: Path) -> tuple[Path, Path]:
    """``metrics.json`` for ``dvc metrics`` and ``confusion.csv`` (actual, predicted) for ``dvc plots``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path, confusion_path = out_dir / METRICS_FILE, out_dir / CONFUSION_FILE
    metrics_path.write_text(json.dumps(metrics, indent=2))
    pd.DataFrame({"actual": [classes[i] for i in pred.y_true], "predicted": [classes[i] for i in pred.y_pred]}).to_csv(
        confusion_path, index=False
    )
    return metrics_path, confusion_path


def evaluate_model(model_dir: Path, split_csv: Path, out_dir: Path, batch_size: int = 64) -> dict:
    """The evaluate step: score on the test split, write metrics and the confusion plot data."""
    metrics, pred = evaluate(model_dir, load_split(split_csv), batch_size)
    save_metrics(metrics, pred, list(metrics["per_class"]), out_dir)  # per_class is in the model's class order
    return metrics
