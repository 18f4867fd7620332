"""Frozen-backbone features, extracted once and cached on disk.

The cache key is the data version (DVC md5, or the images' own hashes when untracked), the backbone, a
digest of its weights and the preprocessing: change any of them and the features are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from headstart.ground import progress
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
    """sha256 of everything the features depend on: data, backbone, weights, preprocessing and pooling."""
    blob = json.dumps([data_version, backbone, weights_digest, pre.to_dict(), pool], sort_keys=True)
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
    with torch.inference_mode():
        for batch in progress.iterate(loader, "extracting features", len(loader)):
            images, _ = accelerator.to_device(*batch)
            chunks.append(pooled_features(model, images).float().cpu())
    model.to("cpu")
    return torch.cat(chunks).numpy()


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
    """Features for ``table`` from ``cache_dir/<key>.safetensors``, extracting and saving them on a miss."""
    path = cache_dir / f"{key}.safetensors"
    if path.is_file():
        return FeatureSet(load_file(path)["features"].numpy(), path, True)
    features = extract(model, table, pre, batch_size, workers, device)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({"features": torch.from_numpy(features)}, partial)
    partial.rename(path)  # atomic: a crash never leaves a truncated cache entry
    log.info("cached %d feature vectors of width %d in %s", *features.shape, path)
    return FeatureSet(features, path, False)
