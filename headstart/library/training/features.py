"""Frozen-backbone features, extracted once and cached on disk.

The cache key is the data version (DVC md5, or the images' own hashes when untracked), the backbone, a
digest of its weights, the preprocessing and the timm and torch versions: change any of them and the features
are recomputed. Each entry carries the sha256 of its features; a damaged entry is rebuilt with a warning.
Writers use unique partial names and publish by rename, so concurrent runs never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from headstart.ground import progress
from headstart.ground.params import Params
from headstart.ground.paths import cache_dir
from headstart.library.data.loader import ImageTable, make_loader
from headstart.library.data.transforms import Preprocessing, build_transform
from headstart.library.models.backbones import pooled_features
from headstart.library.training.accelerator import resolve_accelerator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    """Features of every row of a split table, in the table's order, and whether they came from the cache."""

    features: np.ndarray
    path: Path
    from_cache: bool


def cache_key(data_version: str, backbone: str, weights_digest: str, pre: Preprocessing, pool: str) -> str:
    """sha256 of everything the features depend on: data, backbone, weights, preprocessing, pooling, and the
    timm and torch versions (a new release may compute the same layers differently)."""
    import timm

    versions = {"timm": timm.__version__, "torch": torch.__version__}
    blob = json.dumps([data_version, backbone, weights_digest, pre.to_dict(), pool, versions], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def data_version(split: pd.DataFrame, data_md5: str | None) -> str:
    """The DVC md5 plus the hashes of the rows in order (so a different split never hits a stale cache)."""
    rows = hashlib.sha256("\n".join(split["sha256"]).encode()).hexdigest()
    return f"{data_md5 or 'untracked'}:{rows}"


def extract(
    model: nn.Module, table: pd.DataFrame, pre: Preprocessing, batch_size: int, workers: int, device: str = "auto"
) -> np.ndarray:
    """Pooled features of every image (eval transform, no augmentation), in table order. Always fp32 (cached
    features must not depend on the machine's precision); on the GPU when ``device`` resolves to one."""
    loader = make_loader(
        ImageTable(table, sorted(set(table["label"])), build_transform(pre)), batch_size, False, workers
    )
    accelerator = resolve_accelerator(device, "fp32")
    accelerator.prepare(model)
    model.eval()
    chunks = []
    with torch.inference_mode(), _exact_fp32():
        for batch in progress.iterate(loader, "extracting features", len(loader)):
            images, _ = accelerator.to_device(*batch)
            chunks.append(pooled_features(model, images).float().cpu())
    model.to("cpu")
    return torch.cat(chunks).numpy()


@contextmanager
def _exact_fp32() -> Iterator[None]:
    """TF32 off for the extraction: with it on, GPU matmuls and convolutions round to 10 mantissa bits and the
    cached features would differ from the CPU's."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def cached_features(
    model: nn.Module,
    table: pd.DataFrame,
    pre: Preprocessing,
    key: str,
    cache_dir: Path,
    batch_size: int,
    workers: int,
    device: str = "auto",
) -> FeatureSet:
    """Features for ``table`` from ``cache_dir/<key>.safetensors``, extracting and saving them on a miss or when
    the entry is damaged (a warning names it)."""
    path = cache_dir / f"{key}.safetensors"
    if path.is_file():
        cached = _read_entry(path, len(table))
        if cached is not None:
            return FeatureSet(cached, path, True)
    features = extract(model, table, pre, batch_size, workers, device)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(".*.partial"):  # a killed writer's; a live one is never a day old
        with suppress(OSError):
            if time.time() - stale.stat().st_mtime > 86400:
                stale.unlink()
    partial = cache_dir / f".{key}.{uuid.uuid4().hex[:12]}.partial"  # unique: concurrent writers never collide
    tensor = torch.from_numpy(np.ascontiguousarray(features))
    save_file({"features": tensor}, partial, metadata={"sha256": _digest(tensor), "rows": str(len(table))})
    partial.replace(path)  # atomic: readers see a whole entry or none
    log.info("cached %d feature vectors of width %d in %s", *features.shape, path)
    return FeatureSet(features, path, False)


def _digest(features: torch.Tensor) -> str:
    return hashlib.sha256(features.numpy().tobytes()).hexdigest()


def _read_entry(path: Path, rows: int) -> np.ndarray | None:
    """The cached features when the entry is whole (its sha256 and row count match); else None, with a warning."""
    try:
        with safe_open(path, framework="pt") as entry:
            metadata = entry.metadata() or {}
            features = entry.get_tensor("features")
    except Exception as exc:  # safetensors raises its own error types for a torn or foreign file
        log.warning("feature cache entry %s is unreadable (%s); extracting again", path, exc)
        return None
    if metadata.get("sha256") != _digest(features) or metadata.get("rows") != str(rows):
        log.warning("feature cache entry %s does not match its checksum; extracting again", path)
        return None
    return features.numpy()


def frozen_backbone(
    backbone: str, weights: str, input_size: int | None, pool: str
) -> tuple[nn.Module, Preprocessing, str]:
    """The pretrained backbone as a frozen feature extractor (classifier removed, ``pool`` pooling), its
    preprocessing and its weights digest (taken before the head is removed, as every feature cache key is)."""
    from headstart.library.data.transforms import preprocessing_for
    from headstart.library.models.backbones import check_input_size, create_pretrained, freeze_all
    from headstart.library.models.weights import weights_digest

    model = create_pretrained(backbone, weights)
    pre = preprocessing_for(model, input_size)
    check_input_size(backbone, pre.input_size)
    digest = weights_digest(model)
    model.reset_classifier(0, global_pool=pool)
    freeze_all(model)
    return model, pre, digest


def training_features(
    model: nn.Module, split: pd.DataFrame, pre: Preprocessing, digest: str, params: Params, data_md5: str | None
) -> tuple[pd.DataFrame, FeatureSet]:
    """Cached pooled features of the split's train and val rows (the rows, in feature order, and the features):
    the features scenario, the hybrid head start and the health step share one cache entry."""
    p = params.train
    rows = split[split["split"].isin(["train", "val"])].reset_index(drop=True)
    key = cache_key(data_version(rows, data_md5), params.model.backbone, digest, pre, params.model.head.pool)
    directory = Path(p.feature_cache) if p.feature_cache else cache_dir() / "features"
    return rows, cached_features(model, rows, pre, key, directory, params.evaluate.batch_size, p.num_workers, p.device)
