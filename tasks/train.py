"""Fine-tuning: a pretrained timm backbone with a new head, AdamW and warmup+cosine from timm's factories."""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from torch import nn

from headstart.config import Params
from tasks.augment import build_transform, preprocessing_for
from tasks.backbone import create_classifier, freeze_stages
from tasks.dataset import ImageTable, make_loader
from tasks.model_io import ModelConfig, save_model

log = logging.getLogger(__name__)
CURVES_FILE = "curves.csv"


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model went and how training went, epoch by epoch."""

    model_dir: Path
    history: list[dict[str, float]]
    trainable_parameters: int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a rerun gives the same model on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_names(split: pd.DataFrame) -> list[str]:
    """Sorted class names across all splits: the model's output order."""
    return sorted(split["label"].unique())


def accuracy_on(model: nn.Module, loader: torch.utils.data.DataLoader) -> float:
    """Top-1 accuracy of ``model`` over a loader (eval mode, no grad)."""
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for images, targets in loader:
            logits = model(images.contiguous(memory_format=torch.channels_last))
            correct += int((logits.argmax(1) == targets).sum())
            total += len(targets)
    return correct / max(total, 1)


def train(split: pd.DataFrame, params: Params, out_dir: Path, lineage: dict) -> TrainResult:
    """Fine-tune on the ``train`` rows, report ``val`` accuracy per epoch, save the model folder.

    A checkpoint (weights + optimizer/scheduler state) is written every epoch under ``checkpoints/``.
    """
    p, m = params.train, params.model
    seed_everything(p.seed)
    if p.threads:
        torch.set_num_threads(p.threads)
    classes = class_names(split)
    model = create_classifier(m.backbone, m.weights, len(classes), m.head)
    freeze_stages(model, p.freeze_stages, p.bn)
    model = model.to(memory_format=torch.channels_last)
    pre = preprocessing_for(model, m.input_size)

    train_rows, val_rows = split[split["split"] == "train"], split[split["split"] == "val"]
    train_loader = make_loader(
        ImageTable(train_rows, classes, build_transform(pre, params.augment)),
        p.batch_size,
        True,
        p.num_workers,
        p.seed,
    )
    val_loader = make_loader(ImageTable(val_rows, classes, build_transform(pre)), p.batch_size, False, 0)
    history = fit(model, train_loader, val_loader if len(val_rows) else None, params, out_dir / "checkpoints")

    config = ModelConfig(
        backbone=m.backbone,
        classes=classes,
        head=m.head.model_dump(),
        freeze_stages=p.freeze_stages,
        bn=p.bn,
        preprocessing=pre.to_dict(),
        scenario=p.scenario,
        lineage=lineage,
    )
    model_dir = save_model(model, config, out_dir / "model")
    write_curves(history, out_dir / CURVES_FILE)
    trainable = sum(t.numel() for t in model.parameters() if t.requires_grad)
    return TrainResult(model_dir=model_dir, history=history, trainable_parameters=trainable)


def fit(
    model: nn.Module,
    train_loader: torch.utils.data.DataLoader,
    val_loader: torch.utils.data.DataLoader | None,
    params: Params,
    checkpoint_dir: Path,
) -> list[dict[str, float]]:
    """The epoch loop: AdamW + warmup/cosine stepped per update, label-smoothed cross-entropy."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    p = params.train
    optimizer = create_optimizer_v2(model, opt="adamw", lr=p.lr, weight_decay=p.weight_decay)
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=p.epochs,
        warmup_epochs=p.warmup_epochs,
        warmup_lr=p.lr / 10,
        min_lr=p.lr / 100,
        step_on_epochs=False,
        updates_per_epoch=len(train_loader),
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)
    history, updates = [], 0
    for epoch in range(p.epochs):
        model.train()
        total_loss = seen = 0
        for images, targets in train_loader:
            loss = loss_fn(model(images.contiguous(memory_format=torch.channels_last)), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            updates += 1
            scheduler.step_update(num_updates=updates)
            total_loss += loss.item() * len(targets)
            seen += len(targets)
        scheduler.step(epoch + 1)
        row = {
            "epoch": epoch + 1,
            "train_loss": total_loss / max(seen, 1),
            "lr": optimizer.param_groups[0]["lr"],
        }
        if val_loader is not None:
            row["val_accuracy"] = accuracy_on(model, val_loader)
        history.append(row)
        save_checkpoint(model, optimizer, scheduler, epoch + 1, checkpoint_dir)
        log.info("epoch %d/%d %s", epoch + 1, p.epochs, {k: round(v, 4) for k, v in row.items()})
    return history


def save_checkpoint(model: nn.Module, optimizer, scheduler, epoch: int, checkpoint_dir: Path) -> None:
    """Weights as safetensors; optimizer and scheduler state as plain tensors (readable with weights_only)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()},
        checkpoint_dir / "last.safetensors",
    )
    state = {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save(state, checkpoint_dir / "last-state.pt")


def write_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Per-epoch training curves as CSV (``dvc plots`` reads it)."""
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return path


def train_model(split_csv: Path, params: Params, out_dir: Path, lineage: dict) -> TrainResult:
    """The train step: read the split table and fine-tune."""
    from tasks.split import load_split

    return train(load_split(split_csv), params, out_dir, lineage)
