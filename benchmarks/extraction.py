"""P10: the pipeline's feature extraction against a bare forward pass of the same backbone on the same images.

A: ``features.extract`` as the pipeline runs it (decode and resize through the product's DataLoader, then the
frozen backbone through the engine ``features_for`` picks: ONNX Runtime on the CPU unless
``HEADSTART_FEATURE_ENGINE=torch``, which normalises in its graph; torch's pipeline normalises per image).
B: the same images already decoded and transformed into one tensor (untimed), then only the network in batches of
the same size and threads: torch's ``forward_features`` + pooling (channels_last, ``torch.inference_mode``) on the
normalised images, and the same ONNX Runtime session alone on the resized uint8 pixels (it normalises in its
graph). Alternated A/B/A/B in one run (these machines vary ~1.5x between runs); the best of each side is
compared, and the median of the rounds' own ratios (a round's A and B run seconds apart). Goal: A / (bare
forward of A's engine) >= 0.9.

    .venv/bin/python benchmarks/extraction.py [--images 512] [--rounds 4] [--workers 0] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pandas as pd
import torch

from headstart.ground.params import load_params
from headstart.ground.paths import cache_dir
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
from headstart.library.data.loader import ImageTable
from headstart.library.data.transforms import build_transform
from headstart.library.models.backbones import pooled_features
from headstart.library.training.features import extract, frozen_backbone
from headstart.library.training.onnx_features import cpu_session, run_session

REPO = Path(__file__).resolve().parents[1]


def pipeline(model, table: pd.DataFrame, extractor, batch: int, workers: int, session) -> float:
    start = time.perf_counter()
    extract(model, table, extractor, batch, workers, "cpu", session)
    return time.perf_counter() - start


def bare_onnx(session, images: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        run_session(session, images[first : first + batch])
    return time.perf_counter() - start


def bare(model, images: torch.Tensor, extractor, batch: int) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(images), batch):
            chunk = images[first : first + batch].contiguous(memory_format=torch.channels_last)
            pooled_features(model, chunk, extractor.stages, extractor.pool)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of the pipeline side")
    parser.add_argument("--size", type=int, default=None, help="input size (default: the backbone's pretrained)")
    args = parser.parse_args()
    params = load_params(REPO / "params.yaml")
    m, batch = params.model, params.evaluate.batch_size
    model, extractor = frozen_backbone(m.backbone, m.weights, args.size or m.features_input_size, m.head.pool)
    with tempfile.TemporaryDirectory() as work:
        pool = export_split(locate_idx_dir(cache_dir() / "debs"), "train", args.images // 10, 0, Path(work)).root
        files = sorted(pool.rglob("*.png"))
        table = pd.DataFrame({"file": [str(f) for f in files], "label": [f.parent.name for f in files]})
        decoded = ImageTable(table, sorted(set(table["label"])), build_transform(extractor.pre))
        images = torch.stack([decoded[i][0] for i in range(len(decoded))])
        resized = ImageTable(table, sorted(set(table["label"])), build_transform(extractor.pre, normalise=False))
        pixels = torch.stack([torch.as_tensor(resized[i][0]) for i in range(len(resized))])
        print(f"{m.backbone} at {extractor.pre.input_size} px, batch {batch}, {torch.get_num_threads()} threads, "
              f"{len(files)} images; pipeline with {args.workers} loader worker(s)")  # fmt: skip
        session = cpu_session(model, extractor)  # exported once per machine (untimed), None: torch
        engine = "onnxruntime" if session is not None else "torch"
        print(f"pipeline engine: {engine}")
        bare(model, images[:batch], extractor, batch)  # oneDNN builds its kernels for this shape once, untimed
        if session is not None:  # and ONNX Runtime its memory arena, on its first run: both sides start warm
            bare_onnx(session, pixels[:batch], batch)
        a, b, c = [], [], []
        for n in range(args.rounds):
            a.append(pipeline(model, table, extractor, batch, args.workers, session))
            b.append(bare(model, images, extractor, batch))
            c.append(bare_onnx(session, pixels, batch) if session is not None else float("nan"))
            rates = (f"pipeline {len(files) / a[-1]:.1f} img/s | bare torch {len(files) / b[-1]:.1f} img/s | "
                     f"bare onnxruntime {len(files) / c[-1]:.1f} img/s")  # fmt: skip
            print(f"round {n + 1}: {rates}")
    same = c if session is not None else b
    rounds = sorted(bare_time / pipeline_time for bare_time, pipeline_time in zip(same, a, strict=True))
    print(f"P10 pipeline / bare forward of its engine ({engine}) = {min(same) / min(a):.2f} best against best, "
          f"{statistics.median(rounds):.2f} median of the rounds' ratios (goal >= 0.9); "
          f"pipeline / bare torch forward = {min(b) / min(a):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
