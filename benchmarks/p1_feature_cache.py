"""P1: retraining a frozen-backbone head on unchanged data, with the feature cache vs recomputing features
every epoch. Both are measured side by side in one run; the ratio is printed, never asserted (goal >= 20x).

    .venv/bin/python benchmarks/p1_feature_cache.py [--per-class 50] [--epochs 10] [--size 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch

from headstart.ground.params import load_params
from headstart.ground.paths import cache_dir
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
from headstart.library.data.manifest import build_manifest
from headstart.library.data.split import make_split
from headstart.library.data.transforms import preprocessing_for
from headstart.library.models.backbones import attach_head, create_pretrained, freeze_all
from headstart.library.training.feature_store import FeatureStore
from headstart.library.training.features import extract, extractor_of, features_for
from headstart.library.training.linear_probe import fit_head

REPO = Path(__file__).resolve().parents[1]


def setup(per_class: int, size: int, workdir: Path) -> tuple:
    pool = export_split(locate_idx_dir(cache_dir() / "debs"), "train", per_class, 0, workdir / "pool").root
    params = load_params(REPO / "params.yaml", [f"model.input_size={size}"])
    rows = make_split(build_manifest(pool).table, pool, params.split).table
    rows = rows[rows["split"] == "train"].reset_index(drop=True)
    model = create_pretrained(params.model.backbone, params.model.weights)
    classes = sorted(set(rows["label"]))
    attach_head(model, len(classes), params.model.head)
    freeze_all(model)
    for p in model.get_classifier().parameters():
        p.requires_grad_(True)
    targets = np.array([classes.index(c) for c in rows["label"]])
    return params, rows, model.to(memory_format=torch.channels_last), targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        params, rows, model, targets = setup(args.per_class, args.size, workdir)
        pre = preprocessing_for(model, args.size)
        extractor = extractor_of(model, params.model.backbone, pre, params.model.head.pool)
        store = FeatureStore(workdir / "fc", 10**9)
        batch = params.evaluate.batch_size

        start = time.perf_counter()
        features_for(model, rows, extractor, store, batch, 0)  # cold: extract once and store
        cold = time.perf_counter() - start

        start = time.perf_counter()
        one_epoch = load_params(REPO / "params.yaml", ["train.head_epochs=1"])
        for _ in range(args.epochs):
            fit_head(model.get_classifier(), extract(model, rows, extractor, batch, 0), targets, one_epoch)
        recompute = time.perf_counter() - start

        start = time.perf_counter()
        warm = features_for(model, rows, extractor, store, batch, 0)
        assert warm.from_cache
        all_epochs = load_params(REPO / "params.yaml", [f"train.head_epochs={args.epochs}"])
        fit_head(model.get_classifier(), warm.features, targets, all_epochs)
        cached = time.perf_counter() - start

    print(
        f"P1 feature cache: {len(rows)} images, {args.size} px, {params.model.backbone}, {args.epochs} epochs, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"  first extraction (cold cache, once): {cold:8.2f} s")
    print(f"  recompute features every epoch:      {recompute:8.2f} s")
    print(f"  with the feature cache (warm):       {cached:8.3f} s")
    print(f"  ratio recompute / cached:            {recompute / cached:8.1f}x   (goal >= 20x)")


if __name__ == "__main__":
    main()
