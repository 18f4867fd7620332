"""The cost of determinism on this machine: the same fine-tune with ``train.deterministic`` off (the default) and
on, alternated A/B/A/B in one process, on one tiny Fashion-MNIST split; and whether each setting repeats its
weights bit for bit and agrees with the other. Printed, never asserted.

    .venv/bin/python benchmarks/determinism.py [--rounds 3] [--per-class 20] [--epochs 2] [--size 64]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch

from headstart.ground.params import SplitParams, load_params
from headstart.ground.paths import cache_dir
from headstart.ground.run_folder import RunFolder
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
from headstart.library.data.manifest import build_manifest
from headstart.library.data.split import make_split
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        idx = locate_idx_dir(cache_dir() / "debs")
        pool = export_split(idx, "train", args.per_class, 0, base / "pool").root
        split = make_split(build_manifest(pool).table, pool, SplitParams()).table
        seconds: dict[bool, list[float]] = {False: [], True: []}
        digests: dict[bool, set[str]] = {False: set(), True: set()}
        for n in range(args.rounds):
            for deterministic in (False, True) if n % 2 == 0 else (True, False):  # A/B, then B/A
                params = load_params(
                    REPO_PARAMS,
                    ["train.scenario=finetune", f"train.epochs={args.epochs}", f"model.input_size={args.size}",
                     f"train.num_workers={args.workers}", f"train.deterministic={str(deterministic).lower()}"],
                )  # fmt: skip
                out = RunFolder(base / f"run-{n}-{deterministic}")
                start = time.perf_counter()
                result = train(split, params, out, {})
                seconds[deterministic].append(time.perf_counter() - start)
                digests[deterministic].add(
                    hashlib.sha256((result.model_dir / "model.safetensors").read_bytes()).hexdigest()
                )
    images = int((split["split"] == "train").sum())
    print(
        f"determinism on {torch.get_num_threads()} torch threads: finetune, {images} training images, "
        f"{args.size} px, {args.epochs} epochs, {args.workers} loader workers, {args.rounds} rounds alternated"
    )
    for deterministic in (False, True):
        runs = ", ".join(f"{s:.1f}" for s in seconds[deterministic])
        median = statistics.median(seconds[deterministic])
        print(f"  train.deterministic={str(deterministic).lower():5}  median {median:6.2f} s  (runs: {runs})  "
              f"distinct weights over its runs: {len(digests[deterministic])}")  # fmt: skip
    ratio = statistics.median(seconds[True]) / statistics.median(seconds[False])
    same = digests[False] == digests[True] and len(digests[False]) == 1
    print(f"  deterministic / default time: {ratio:.2f}x; both settings give the same weights: {same}")


if __name__ == "__main__":
    main()
