"""Training in three scenarios over one pretrained timm backbone:

- ``features``: backbone frozen, features cached on disk, a scikit-learn classifier on top;
- ``finetune``: a new head, early stages frozen, AdamW + warmup/cosine from timm's factories;
- ``hybrid`` (LP-FT): the head first fitted on the cached features, then a partial-unfreeze fine-tune from it.

All three save the same kind of model folder (see ``tasks/model_io.py``).
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from headstart.config import Params
from headstart.paths import cache_dir
from tasks.augment import Preprocessing, build_transform, preprocessing_for
from tasks.backbone import attach_head, check_input_size, create_pretrained, freeze, freeze_all, stage_modules
from tasks.classical import make_classifier
from tasks.dataset import ImageTable, make_loader
from tasks.features import cache_key, cached_features, data_version
from tasks.fit import Schedule, fit
from tasks.model_io import ModelConfig, save_model
from tasks.weights import weights_digest

log = logging.getLogger(__name__)
CURVES_FILE = "curves.csv"


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model went and how training went, epoch by epoch."""

    model_dir: Path
    history: list[dict[str, float]]
    trainable_parameters: int
    features_from_cache: bool | None = None  # features and hybrid: whether the feature cache was hit


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a rerun gives the same model on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_names(split: pd.DataFrame) -> list[str]:
    """Sorted class names across all splits: the model's output order."""
    return sorted(split["label"].unique())


def resolve_scenario(split: pd.DataFrame, params: Params) -> Params:
    """``auto`` → ``features`` for small data (the linear probe wins there, measured in benchmarks/recipes.py),
    else ``train.auto_large``; any other scenario is kept."""
    p = params.train
    if p.scenario != "auto":
        return params
    smallest = int(split.loc[split["split"] == "train", "label"].value_counts().min())
    chosen = "features" if smallest < p.auto_features_below else p.auto_large
    log.info("scenario auto: smallest class has %d training images → %s", smallest, chosen)
    return params.model_copy(update={"train": p.model_copy(update={"scenario": chosen})})


def train(split: pd.DataFrame, params: Params, out_dir: Path, lineage: dict) -> TrainResult:
    """Train the configured scenario on the ``train`` rows (``val`` rows are reported per epoch)."""
    params = resolve_scenario(split, params)
    p, m = params.train, params.model
    seed_everything(p.seed)
    if p.threads:
        torch.set_num_threads(p.threads)
    classes = class_names(split)
    model = create_pretrained(m.backbone, m.weights)
    pre = preprocessing_for(model, m.input_size)
    check_input_size(m.backbone, pre.input_size)
    digest = weights_digest(model)  # before the head changes: shared by features and hybrid caches
    trainer = {"features": _train_features, "finetune": _train_finetune, "hybrid": _train_hybrid}[p.scenario]
    result = trainer(model, split, classes, pre, params, out_dir, lineage, digest)
    write_curves(result.history, out_dir / CURVES_FILE)
    return result


def _config(
    classes: list[str], pre: Preprocessing, params: Params, lineage: dict, frozen: int | None = None, **extra
) -> ModelConfig:
    """The saved model's config; ``frozen`` is the stages still frozen after gradual unfreezing."""
    p, m = params.train, params.model
    stages = p.freeze_stages if frozen is None else frozen
    return ModelConfig(
        backbone=m.backbone, classes=classes, head=m.head.model_dump(), freeze_stages=stages, bn=p.bn,
        preprocessing=pre.to_dict(), scenario=p.scenario, lineage=lineage, freeze_patterns=list(p.freeze_patterns),
        **extra,
    )  # fmt: skip


def _targets(rows: pd.DataFrame, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[label] for label in rows["label"]], dtype=np.int64)


def _features(model, split, pre, params: Params, lineage: dict, digest: str):
    """Cached pooled features of the train and val rows."""
    p = params.train
    rows = split[split["split"].isin(["train", "val"])].reset_index(drop=True)
    key = cache_key(data_version(rows, lineage.get("data_md5")), params.model.backbone, digest, pre,
                    params.model.head.pool)  # fmt: skip
    directory = Path(p.feature_cache) if p.feature_cache else cache_dir() / "features"
    return rows, cached_features(model, rows, pre, key, directory, params.evaluate.batch_size, p.num_workers, p.device)


def _train_features(model, split, classes, pre, params, out_dir, lineage, digest) -> TrainResult:
    p = params.train
    model.reset_classifier(0, global_pool=params.model.head.pool)
    freeze_all(model)
    rows, feats = _features(model, split, pre, params, lineage, digest)
    y, is_train = _targets(rows, classes), (rows["split"] == "train").to_numpy()
    classifier = make_classifier(p.classifier, p.classifier_c, p.seed).fit(feats.features[is_train], y[is_train])
    row = {"epoch": 1, "train_accuracy": float(classifier.score(feats.features[is_train], y[is_train]))}
    if (~is_train).any():
        row["val_accuracy"] = float(classifier.score(feats.features[~is_train], y[~is_train]))
    log.info("%s on %d cached features: %s", p.classifier, int(is_train.sum()), row)
    config = _config(classes, pre, params, lineage, classifier=p.classifier)
    model_dir = save_model(model, config, out_dir / "model", classifier)
    return TrainResult(model_dir, [row], 0, feats.from_cache)


def _train_finetune(model, split, classes, pre, params, out_dir, lineage, digest) -> TrainResult:
    p = params.train
    attach_head(model, len(classes), params.model.head)
    freeze(model, p.freeze_stages, p.bn, p.freeze_patterns)
    history, still_frozen = _fit_on_images(model, split, classes, pre, params, out_dir)
    model_dir = save_model(model, _config(classes, pre, params, lineage, still_frozen), out_dir / "model")
    return TrainResult(model_dir, history, _trainable(model))


def _train_hybrid(model, split, classes, pre, params, out_dir, lineage, digest) -> TrainResult:
    p = params.train
    attach_head(model, len(classes), params.model.head)
    rows, feats = _features(model, split, pre, params, lineage, digest)
    is_train = (rows["split"] == "train").to_numpy()
    probe_loss = fit_head(model.get_classifier(), feats.features[is_train], _targets(rows, classes)[is_train], params)
    log.info("linear probe: head fitted on %d cached features, loss %.4f", int(is_train.sum()), probe_loss)
    freeze(model, p.freeze_stages, p.bn, p.freeze_patterns)
    history, still_frozen = _fit_on_images(model, split, classes, pre, params, out_dir)
    model_dir = save_model(model, _config(classes, pre, params, lineage, still_frozen), out_dir / "model")
    return TrainResult(model_dir, history, _trainable(model), feats.from_cache)


def _trainable(model: nn.Module) -> int:
    return sum(t.numel() for t in model.parameters() if t.requires_grad)


def fit_head(head: nn.Module, features: np.ndarray, targets: np.ndarray, params: Params) -> float:
    """Fit the classifier head on cached features: full-batch AdamW steps (the linear-probe stage of LP-FT)."""
    from timm.optim import create_optimizer_v2

    p = params.train
    optimizer = create_optimizer_v2(head, opt="adamw", lr=p.head_lr, weight_decay=p.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)
    x, y = torch.from_numpy(features), torch.from_numpy(targets)
    head.train()
    for _ in range(p.head_epochs):
        loss = loss_fn(head(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.item()


def _fit_on_images(model, split, classes, pre, params: Params, out_dir: Path) -> tuple[list[dict], int]:
    """Fine-tune on images; returns the history and how many stages are still frozen at the end."""
    p = params.train
    schedule = Schedule(stage_modules(model, p.freeze_stages), p.bn)
    train_rows, val_rows = split[split["split"] == "train"], split[split["split"] == "val"]
    train_set = ImageTable(train_rows, classes, build_transform(pre, params.augment))
    train_loader = make_loader(train_set, p.batch_size, True, p.num_workers, p.seed)
    val_loader = None
    if len(val_rows):
        val_loader = make_loader(ImageTable(val_rows, classes, build_transform(pre)), p.batch_size, False, 0)
    history = fit(model, train_loader, val_loader, params, out_dir / "checkpoints", schedule, len(classes))
    return history, schedule.still_frozen


def write_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Per-epoch training curves as CSV (``dvc plots`` reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return path


def train_model(split_csv: Path, params: Params, out_dir: Path, lineage: dict) -> TrainResult:
    """The train step: read the split table and train the configured scenario."""
    from tasks.split import load_split

    return train(load_split(split_csv), params, out_dir, lineage)
