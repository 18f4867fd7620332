"""Training in three scenarios over one pretrained timm backbone:

- ``features``: backbone frozen, features cached on disk, a scikit-learn classifier on top;
- ``finetune``: a new head, early stages frozen, AdamW + warmup/cosine from timm's factories;
- ``hybrid`` (LP-FT): the head first fitted on the cached features, then a partial-unfreeze fine-tune from it.

All three save the same kind of model folder (see ``headstart/library/models/saved_model.py``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.loader import ImageTable, make_loader
from headstart.library.data.transforms import Preprocessing, build_transform, preprocessing_for
from headstart.library.models.backbones import (
    attach_head,
    freeze,
    freeze_all,
    stage_modules,
)
from headstart.library.models.classical import fit_classifier
from headstart.library.models.model_config import ModelConfig, read_config
from headstart.library.models.presets import check_input_size
from headstart.library.models.saved_model import save_model
from headstart.library.models.weights import create_with_origin
from headstart.library.training import distributed
from headstart.library.training.accelerator import resolve_accelerator
from headstart.library.training.checkpoints import exclusive
from headstart.library.training.determinism import (
    deterministic_algorithms,
    seed_everything,
    training_environment,
)
from headstart.library.training.epochs import UnfreezeSchedule, fit
from headstart.library.training.features import FeatureSet, extractor_of, training_features
from headstart.library.training.linear_probe import fit_head
from headstart.library.training.world import World
from headstart.library.training.world import current as current_world

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model went and how training went, epoch by epoch."""

    model_dir: Path
    config: ModelConfig  # as saved: `auto` resolved to the scenario that ran
    history: list[dict[str, float]]
    trainable_parameters: int | None  # None when read back from a run folder
    features_extracted: int | None = None  # features and hybrid: images extracted (the rest read from the store)

    @property
    def features_from_cache(self) -> bool | None:
        """Features and hybrid: whether every feature came from the store."""
        return None if self.features_extracted is None else self.features_extracted == 0


def class_names(split: pd.DataFrame) -> list[str]:
    """Sorted class names across all splits: the model's output order."""
    return sorted(split["label"].unique())


def resolve_scenario(split: pd.DataFrame, params: Params, device_type: str | None = None) -> tuple[Params, dict | None]:
    """``auto`` resolved by data size and device: ``features`` for small data (the linear probe wins there,
    measured in benchmarks/recipes.py, on any device), else ``train.auto_large`` — on the CPU at
    ``model.input_size`` (64 px: what 2 cores afford), on CUDA at the backbone's pretrained resolution (what a GPU
    makes cheap; measured on an H200 at 200/class: 88.3 % against the CPU recipe's 86.7 %). Returns the params
    to train with and the choice (scenario, input size, device, why), which is logged and recorded in the model's
    lineage; any other scenario is kept, with no choice. ``device_type``: where training runs (default: as
    ``train.device`` resolves here)."""
    p = params.train
    if p.scenario != "auto":
        return params, None
    device_type = device_type or resolve_accelerator(p.device, p.precision, p.compile).device.type
    smallest = int(split.loc[split["split"] == "train", "label"].value_counts().min())
    input_size = params.model.input_size
    if smallest < p.auto_features_below:
        chosen = "features"
        reason = (f"the smallest class has {smallest} training images (< train.auto_features_below "
                  f"{p.auto_features_below}): a linear probe on frozen features wins at this size")  # fmt: skip
    else:
        chosen = p.auto_large
        reason = f"the smallest class has {smallest} training images (>= {p.auto_features_below})"
        if device_type == "cuda":
            reason += (": a fine-tune at the backbone's pretrained resolution, which a GPU makes cheap (not "
                       f"model.input_size {input_size}; train.scenario {chosen} keeps it)")  # fmt: skip
            input_size = None
        else:
            reason += f": a fine-tune at model.input_size {input_size}, what the CPU affords"
    choice = {"scenario": chosen, "device": device_type, "input_size": input_size, "reason": reason}
    log.info("scenario auto on %s: %s (%s)", device_type, chosen, reason)
    model = params.model.model_copy(update={"input_size": input_size})
    return params.model_copy(update={"train": p.model_copy(update={"scenario": chosen}), "model": model}), choice


def train(split: pd.DataFrame, params: Params, run: RunFolder, lineage: dict) -> TrainResult:
    """Train the configured scenario on the ``train`` rows (``val`` rows are reported per epoch).

    Under torchrun (:mod:`distributed`) every rank runs this; rank 0 alone saves the model and curves."""
    params, choice = resolve_scenario(split, params)
    if choice is not None:  # auto's choice, and why, travels with the model
        lineage = {**lineage, "scenario_choice": choice}
    world = current_world()
    if world.distributed and params.train.scenario == "features":
        raise ConfigError("the features scenario fits a classifier in one process: run it without torchrun")
    threads = torch.get_num_threads()  # restored after: a server process trains many runs
    try:
        p = params.train
        accelerator = resolve_accelerator(p.device, p.precision, p.compile, world.local_rank)
        device_type = accelerator.device.type
        distributed.start(world, device_type, params.run.timeout_minutes)
        with deterministic_algorithms(p.deterministic, device_type):
            if p.threads:  # before the environment is recorded: the thread count decides the sums' order
                torch.set_num_threads(p.threads)
            precision = "fp32" if p.scenario == "features" or accelerator.autocast_dtype is None else "bf16"
            environment = training_environment(device_type, precision, world.size, p.deterministic)
            return _train(split, params, run, {**lineage, "environment": environment}, world)
    finally:
        torch.set_num_threads(threads)
        distributed.stop()


def _train(split: pd.DataFrame, params: Params, run: RunFolder, lineage: dict, world: World) -> TrainResult:
    p, m = params.train, params.model
    seed_everything(p.seed)
    classes = class_names(split)
    model, origin = create_with_origin(m.backbone, m.weights)
    lineage = {**lineage, "weights_origin": origin}  # for hub weights: the repository and commit
    # frozen features are extracted at their own size (a linear probe gains from the pretrained resolution,
    # measured in benchmarks/recipes.py); fine-tuning at model.input_size
    pre = preprocessing_for(model, m.features_input_size if p.scenario == "features" else m.input_size)
    check_input_size(m.backbone, pre.input_size)
    trainer = {"features": _train_features, "finetune": _train_finetune, "hybrid": _train_hybrid}[p.scenario]
    result = trainer(model, split, classes, pre, params, run, lineage, world)
    if world.is_main:
        write_curves(result.history, run.curves)
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


def _features(model, split, pre, params: Params, world: World):
    """Pooled features of the train and val rows from the feature store (across processes: rank 0 fills the
    store first). The store keys them without the classifier, so the features and hybrid scenarios share them."""
    m = params.model
    stages = m.feature_stages if params.train.scenario == "features" else 0  # LP-FT's probe: the classifier's input
    extractor = extractor_of(model, m.backbone, pre, m.head.pool, stages)
    with distributed.main_first(world):
        return training_features(model, split, extractor, params)


def _engine_recorded(lineage: dict, feats: FeatureSet) -> dict:
    """Lineage with the engine that computed the frozen features a features or hybrid model was fitted on
    (``environment.feature_engine``: onnxruntime | torch; what ran, not the machine's setting: an export refused
    here or a run-time fallback means torch), so a rebuild on the other engine is judged within tolerance."""
    environment = lineage.get("environment")
    if environment is None:
        return lineage
    return {**lineage, "environment": {**environment, "feature_engine": feats.engine}}


def _train_features(model, split, classes, pre, params, run, lineage, world) -> TrainResult:
    p = params.train
    model.reset_classifier(0, global_pool=params.model.head.pool)
    freeze_all(model)
    rows, feats = _features(model, split, pre, params, world)
    lineage = _engine_recorded(lineage, feats)
    y = _targets(rows, classes)
    fit = (rows["split"] == "train").to_numpy() | (p.features_fit == "train+val")
    # every row (the default, train+val) is fitted on the matrix itself: a masked copy is one more feature matrix
    x_fit, y_fit = (feats.features, y) if fit.all() else (feats.features[fit], y[fit])
    classifier, search = fit_classifier(
        p.classifier, p.classifier_c, p.seed, x_fit, y_fit, p.classifier_search_images, overwrite_x=True
    )  # x_fit standardised in place (one feature matrix fewer at the peak): its own classifier scores it
    row = {"epoch": 1, "train_accuracy": float(classifier[-1].score(x_fit, y_fit)), **search}
    del x_fit
    if (~fit).any():  # held-out validation rows (features_fit: train)
        row["val_accuracy"] = float(classifier.score(feats.features[~fit], y[~fit]))
    log.info("%s on the features of %d images (%s): %s", p.classifier, int(fit.sum()), p.features_fit, row)
    chosen_c = search.get("classifier_c", p.classifier_c if p.classifier_c != "auto" else None)
    config = _config(
        classes, pre, params, lineage, classifier=p.classifier, classifier_c=chosen_c,
        feature_stages=params.model.feature_stages, features_fit=p.features_fit,
    )  # fmt: skip
    model_dir = save_model(model, config, run.model, classifier)
    return TrainResult(model_dir, config, [row], 0, feats.extracted)


def _train_finetune(model, split, classes, pre, params, run, lineage, world) -> TrainResult:
    p = params.train
    attach_head(model, len(classes), params.model.head)
    freeze(model, p.freeze_stages, p.bn, p.freeze_patterns)
    history, still_frozen = _fit_on_images(model, split, classes, pre, params, run, lineage, world)
    config = _config(classes, pre, params, lineage, still_frozen)
    return TrainResult(_saved(model, config, run, world), config, history, _trainable(model))


def _train_hybrid(model, split, classes, pre, params, run, lineage, world) -> TrainResult:
    p = params.train
    attach_head(model, len(classes), params.model.head)
    rows, feats = _features(model, split, pre, params, world)
    lineage = _engine_recorded(lineage, feats)
    is_train = (rows["split"] == "train").to_numpy()
    probe_loss = fit_head(model.get_classifier(), feats.features[is_train], _targets(rows, classes)[is_train], params)
    log.info("linear probe: head fitted on %d cached features, loss %.4f", int(is_train.sum()), probe_loss)
    freeze(model, p.freeze_stages, p.bn, p.freeze_patterns)
    history, still_frozen = _fit_on_images(model, split, classes, pre, params, run, lineage, world)
    config = _config(classes, pre, params, lineage, still_frozen)
    return TrainResult(_saved(model, config, run, world), config, history, _trainable(model), feats.extracted)


def _saved(model: nn.Module, config: ModelConfig, run: RunFolder, world: World) -> Path:
    """The model folder, written by rank 0 alone (the other ranks hold the same weights)."""
    return save_model(model, config, run.model) if world.is_main else run.model


def _trainable(model: nn.Module) -> int:
    return sum(t.numel() for t in model.parameters() if t.requires_grad)


def resume_key(split: pd.DataFrame, params: Params, lineage: dict) -> str:
    """What a checkpoint must match to be resumed: params, the training and validation images (content, labels
    and split), the data version (DVC md5) and the training code (its fingerprint in lineage, when the step
    recorded one): a retry after new data starts afresh."""
    rows = split[split["split"].isin(["train", "val"])]
    images = hashlib.sha256("\n".join(rows["sha256"] + ":" + rows["label"] + ":" + rows["split"]).encode())
    blob = json.dumps([params.digest(), images.hexdigest(), lineage.get("data_md5"), lineage.get("code_sha256")])
    return hashlib.sha256(blob.encode()).hexdigest()


def _fit_on_images(
    model, split, classes, pre, params: Params, run: RunFolder, lineage: dict, world: World
) -> tuple[list[dict], int]:
    """Fine-tune on images (each rank on its shard, with its share of the global batch); returns the history and
    how many stages are still frozen at the end."""
    p = params.train
    schedule = UnfreezeSchedule(stage_modules(model, p.freeze_stages), p.bn)
    train_rows, val_rows = split[split["split"] == "train"], split[split["split"] == "val"]
    # on CUDA the workers stop at uint8 pixels and the GPU normalises (Accelerator.feed)
    accelerator = resolve_accelerator(p.device, p.precision, p.compile, world.local_rank)
    normalise = not accelerator.normalises_pixels
    train_set = ImageTable(train_rows, classes, build_transform(pre, params.augment, normalise, chw=True), p.seed)
    batch = distributed.per_rank_batch(p.batch_size, world)
    train_loader = make_loader(train_set, batch, True, p.num_workers, p.seed, (world.rank, world.size))
    train_loader = accelerator.feed(train_loader, pre)
    val_loader = None
    if len(val_rows):  # built on every rank (so all know there is one); rank 0 alone scores it
        val_set = ImageTable(val_rows, classes, build_transform(pre, normalise=normalise, chw=True))
        val_loader = accelerator.feed(make_loader(val_set, p.batch_size, False, 0), pre)
    key = resume_key(split, params, lineage)
    # the process that writes the checkpoints holds their folder's lock throughout: no second writer meanwhile
    with exclusive(run.checkpoints) if world.is_main else contextlib.nullcontext():
        history = fit(model, train_loader, val_loader, params, run.checkpoints, schedule, len(classes), key, world)
    return history, schedule.still_frozen


def write_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Per-epoch training curves as CSV (``dvc plots`` reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return path


def load_train_result(run: RunFolder) -> TrainResult:
    """The train step's result as its files record it (for ``headstart step`` and resuming)."""
    config = read_config(run.model)
    history = pd.read_csv(run.curves).to_dict("records") if run.curves.is_file() else []
    return TrainResult(run.model, config, history, None)
