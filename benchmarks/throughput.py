"""P2 and P4, measured side by side in one run (printed, never asserted):

- P2: the pipeline's train step (the epoch loop of headstart.library.training.epochs: AdamW + scheduler, label
  smoothing, channels_last) in images/s ÷ a bare PyTorch forward/backward/step loop on the same model,
  resolution, batch and threads (goal >= 0.90). Both read the same pre-decoded batches, so only the step is compared.
- P4: the loader (decode + augment + resize/normalise with the configured workers) in images/s ÷ what training
  consumes in images/s (goal >= 3).

    .venv/bin/python benchmarks/throughput.py [--size 64] [--batch 32] [--images 512] [--workers 2]
        [--device auto|cpu|cuda] [--precision auto|fp32|bf16] [--compile] [--rounds 1]

On a GPU worker (the prepared device check): --device cuda --size 224 --batch 128 --images 4096 --workers 8.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch

from headstart.ground.params import load_params
from headstart.ground.paths import cache_dir
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
from headstart.library.data.loader import ImageTable, make_loader
from headstart.library.data.manifest import build_manifest
from headstart.library.data.split import make_split
from headstart.library.data.transforms import build_transform, preprocessing_for
from headstart.library.models.backbones import create_classifier, freeze
from headstart.library.training.accelerator import Accelerator, resolve_accelerator
from headstart.library.training.epochs import _train_epoch, build_optimizer

REPO = Path(__file__).resolve().parents[1]


def model_for(params, classes: int):
    torch.manual_seed(0)
    model = create_classifier(params.model.backbone, params.model.weights, classes, params.model.head)
    freeze(model, params.train.freeze_stages, params.train.bn)
    return model


def pipeline_rate(params, batches: list, classes: int, accelerator: Accelerator) -> float:
    model = model_for(params, classes)
    forward = accelerator.prepare(model)
    loader = batches  # the very batches the bare loop reads (a DataLoader here would re-collate each one)
    optimizer, scheduler = build_optimizer(model, params, len(loader))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=params.train.label_smoothing)
    parts = (optimizer, scheduler, loss_fn, None, accelerator)
    _train_epoch(forward, model, None, loader, parts, 0)  # warm-up (and compilation, when on)
    synchronize(accelerator)
    start = time.perf_counter()
    _train_epoch(forward, model, None, loader, parts, 1)  # ends on loss.item(): the device has finished
    return sum(len(t) for _, t in batches) / (time.perf_counter() - start)


def bare_rate(params, batches: list, classes: int, channels_last: bool, accelerator: Accelerator) -> float:
    """Plain PyTorch on the same device and precision: the reference the pipeline is held to."""
    model = model_for(params, classes).to(accelerator.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=params.train.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    format_ = torch.channels_last if channels_last else torch.contiguous_format

    def epoch() -> None:
        model.train()
        for images, targets in batches:
            x = images.to(accelerator.device, memory_format=format_)
            with accelerator.autocast():
                loss = loss_fn(model(x), targets.to(accelerator.device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        synchronize(accelerator)

    epoch()  # warm-up
    start = time.perf_counter()
    epoch()
    return sum(len(t) for _, t in batches) / (time.perf_counter() - start)


def synchronize(accelerator: Accelerator) -> None:
    if accelerator.device.type == "cuda":
        torch.cuda.synchronize(accelerator.device)


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
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the pipeline's model")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the three loops, alternated; best of each")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml", [f"model.input_size={args.size}", f"train.batch_size={args.batch}"])
    accelerator = resolve_accelerator(args.device, args.precision, args.compile)
    workers = params.train.num_workers if args.workers is None else args.workers
    with tempfile.TemporaryDirectory() as tmp:
        idx = locate_idx_dir(cache_dir() / "debs")
        pool = export_split(idx, "train", max(1, args.images // 10), 0, Path(tmp) / "pool").root
        table = make_split(build_manifest(pool).table, pool, params.split).table
        classes = sorted(set(table["label"]))
        probe = create_classifier(params.model.backbone, "none", len(classes), params.model.head)
        pre = preprocessing_for(probe, args.size)
        # as training reads them: on CUDA uint8 pixels, normalised on the GPU (Accelerator.feed)
        transform = build_transform(pre, params.augment, not accelerator.normalises_pixels, chw=True)
        loader = accelerator.feed(make_loader(ImageTable(table, classes, transform), args.batch, True, workers, 0), pre)
        loaded, batches = loader_rate(loader)
        batches = [b for b in batches if len(b[1]) == args.batch]
        rates: list[tuple[float, float, float]] = []
        for _ in range(args.rounds):  # alternated: this machine's speed drifts between minutes
            rates.append((
                pipeline_rate(params, batches, len(classes), accelerator),
                bare_rate(params, batches, len(classes), True, accelerator),
                bare_rate(params, batches, len(classes), False, accelerator),
            ))  # fmt: skip
        pipeline, bare_cl, bare_nchw = (max(column) for column in zip(*rates, strict=True))
    threads = torch.get_num_threads()
    print(
        f"{params.model.backbone}, {args.size} px, batch {args.batch}, {threads} torch threads, "
        f"{sum(len(t) for _, t in batches)} images, loader workers {workers}, best of {args.rounds} round(s)"
    )
    print(f"  {accelerator.describe()}")
    print(f"  pipeline train step:            {pipeline:8.1f} img/s")
    print(f"  bare loop, channels_last:       {bare_cl:8.1f} img/s")
    print(f"  bare loop, NCHW (plain PyTorch):{bare_nchw:8.1f} img/s")
    print(f"  P2 pipeline / bare (same memory format): {pipeline / bare_cl:5.2f}   (goal >= 0.90)")
    print(f"  P2 pipeline / bare NCHW:                 {pipeline / bare_nchw:5.2f}")
    print(f"  loader (decode + augment):      {loaded:8.1f} img/s")
    print(f"  P4 loader / training consumption:       {loaded / pipeline:5.2f}   (goal >= 3)")


if __name__ == "__main__":
    main()
