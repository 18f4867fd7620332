"""P2 and P4, measured side by side in one run (printed, never asserted):

- P2: the pipeline's train step (tasks.fit's epoch loop: AdamW + scheduler, label smoothing, channels_last) in
  images/s ÷ a bare PyTorch forward/backward/step loop on the same model, resolution, batch and threads
  (goal >= 0.90). Both read the same pre-decoded batches, so only the step is compared.
- P4: the loader (decode + augment + resize/normalise with the configured workers) in images/s ÷ what training
  consumes in images/s (goal >= 3).

    .venv/bin/python benchmarks/throughput.py [--size 64] [--batch 32] [--images 512] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch
from torch.utils.data import DataLoader, TensorDataset

from headstart.config import load_params
from headstart.paths import cache_dir
from tasks.augment import build_transform, preprocessing_for
from tasks.backbone import create_classifier, freeze
from tasks.dataset import ImageTable, make_loader
from tasks.fashion_mnist import export_split, locate_idx_dir
from tasks.fit import _train_epoch, build_optimizer
from tasks.manifest import build_manifest
from tasks.split import make_split

REPO = Path(__file__).resolve().parents[1]


def model_for(params, classes: int):
    torch.manual_seed(0)
    model = create_classifier(params.model.backbone, params.model.weights, classes, params.model.head)
    freeze(model, params.train.freeze_stages, params.train.bn)
    return model


def pipeline_rate(params, batches: list, classes: int) -> float:
    model = model_for(params, classes).to(memory_format=torch.channels_last)
    loader = DataLoader(TensorDataset(*map(torch.cat, zip(*batches, strict=True))), batch_size=len(batches[0][1]))
    optimizer, scheduler = build_optimizer(model, params, len(loader))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=params.train.label_smoothing)
    _train_epoch(model, loader, optimizer, scheduler, loss_fn, None, None, 0, len(loader))  # warm-up
    start = time.perf_counter()
    _train_epoch(model, loader, optimizer, scheduler, loss_fn, None, None, 1, len(loader))
    return sum(len(t) for _, t in batches) / (time.perf_counter() - start)


def bare_rate(params, batches: list, classes: int, channels_last: bool) -> float:
    model = model_for(params, classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.train.lr)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch() -> None:
        model.train()
        for images, targets in batches:
            x = images.contiguous(memory_format=torch.channels_last) if channels_last else images.contiguous()
            loss = loss_fn(model(x), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    epoch()  # warm-up
    start = time.perf_counter()
    epoch()
    return sum(len(t) for _, t in batches) / (time.perf_counter() - start)


def loader_rate(loader) -> tuple[float, list]:
    for _ in loader:  # warm-up: workers started, files in page cache
        pass
    start, seen, batches = time.perf_counter(), 0, []
    for images, targets in loader:
        seen += len(targets)
        batches.append((images, targets))
    return seen / (time.perf_counter() - start), batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: params.yaml)")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml", [f"model.input_size={args.size}", f"train.batch_size={args.batch}"])
    workers = params.train.num_workers if args.workers is None else args.workers
    with tempfile.TemporaryDirectory() as tmp:
        idx = locate_idx_dir(cache_dir() / "debs")
        pool = export_split(idx, "train", max(1, args.images // 10), 0, Path(tmp) / "pool").root
        table = make_split(build_manifest(pool).table, pool, params.split).table
        classes = sorted(set(table["label"]))
        probe = create_classifier(params.model.backbone, "none", len(classes), params.model.head)
        transform = build_transform(preprocessing_for(probe, args.size), params.augment)
        loader = make_loader(ImageTable(table, classes, transform), args.batch, True, workers, 0)
        loaded, batches = loader_rate(loader)
        batches = [b for b in batches if len(b[1]) == args.batch]
        pipeline = pipeline_rate(params, batches, len(classes))
        bare_cl = bare_rate(params, batches, len(classes), channels_last=True)
        bare_nchw = bare_rate(params, batches, len(classes), channels_last=False)
    threads = torch.get_num_threads()
    print(
        f"{params.model.backbone}, {args.size} px, batch {args.batch}, {threads} torch threads, "
        f"{sum(len(t) for _, t in batches)} images, loader workers {workers}"
    )
    print(f"  pipeline train step:            {pipeline:8.1f} img/s")
    print(f"  bare loop, channels_last:       {bare_cl:8.1f} img/s")
    print(f"  bare loop, NCHW (plain PyTorch):{bare_nchw:8.1f} img/s")
    print(f"  P2 pipeline / bare (same memory format): {pipeline / bare_cl:5.2f}   (goal >= 0.90)")
    print(f"  P2 pipeline / bare NCHW:                 {pipeline / bare_nchw:5.2f}")
    print(f"  loader (decode + augment):      {loaded:8.1f} img/s")
    print(f"  P4 loader / training consumption:       {loaded / pipeline:5.2f}   (goal >= 3)")


if __name__ == "__main__":
    main()
