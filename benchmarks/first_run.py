"""A first run against timm's own train.py on the same data, side by side, alternating (printed, never asserted).

A: a cold default ``headstart run`` (fresh workspace, empty feature store, no champion) on Fashion-MNIST N images
per class + the fixed test set of 100 per class; its per-step times come from the run's "step times" log line.
The ONNX exports of its extractors are made once per machine (~10 s each): the first round on a machine pays
them, later rounds do not (the line says how many a run made).
B: timm's ``train.py`` fine-tuning the same backbone from the same pretrained weights on every labelled image
(``--img-size 64``, 8 epochs, batch 32, AdamW at the default's lr and weight decay, cosine), scored on the same
test images. Goal: A no slower than B, at A's accuracy lead.

timm's train.py is not in the timm package: fetch it from github.com/huggingface/pytorch-image-models (measured
with the train.py of 2026-07-16 and timm 1.0.31) and pass its path:

    .venv/bin/python benchmarks/first_run.py --timm-train PATH/train.py [--per-class 100] [--rounds 2]

Without ``--timm-train`` only A runs: ``--per-class 6000`` puts the whole official training file (60,000 images)
through one default run, timed per step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
BACKBONE, WEIGHTS = "tf_efficientnet_lite0", "package:efficientnet-lite0"


def workspace(root: Path, per_class: int) -> Path:
    """A fresh workspace holding N images per class and the fixed test set (100 per class)."""
    from headstart.library.data.workspace import init_workspace

    ws = init_workspace(root)
    command = [str(BIN / "headstart"), "data", "import", "fashion-mnist", "--per-class", str(per_class),
               "--test-per-class", "100"]  # fmt: skip
    subprocess.run(command, cwd=ws, check=True, capture_output=True)
    return ws


def headstart_run(ws: Path, store: Path, sets: list[str]) -> dict:
    """A cold ``headstart run``: wall time, test accuracy, and the per-step times it logged."""
    from headstart.ground.paths import cache_dir

    exports = cache_dir() / "onnx-features"  # made once per machine and extractor (onnx_features.py)
    before = len(list(exports.glob("*.onnx")))
    command = [str(BIN / "headstart"), "run", "--set", f"train.feature_cache={store}"]
    for override in sets:
        command += ["--set", override]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ws, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"headstart run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    steps = re.search(r"step times: (.*)", done.stdout + done.stderr)
    metrics = json.loads(next((ws / "runs").glob("*/metrics.json")).read_text())
    made = len(list(exports.glob("*.onnx"))) - before
    return {"wall": wall, "accuracy": metrics["accuracy"], "steps": steps.group(1) if steps else "?",
            "exports": f"{made} ONNX export(s) made"}  # fmt: skip


def timm_run(train_py: Path, data: Path, weights: Path, output: Path, seed: int) -> dict:
    """timm's train.py on every labelled image (train/), scored each epoch on the test set (validation/)."""
    command = [
        sys.executable, str(train_py), str(data), "--model", BACKBONE, "--pretrained", "--pretrained-path",
        str(weights), "--num-classes", "10", "--img-size", "64", "--epochs", "8", "-b", "32", "--opt", "adamw",
        "--lr", "0.002", "--weight-decay", "0.02", "--sched", "cosine", "--warmup-epochs", "0", "--device", "cpu",
        "--workers", "2", "--seed", str(seed), "--output", str(output), "--experiment", "run", "--log-interval",
        "1000",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"timm train.py failed:\n{done.stderr[-3000:]}")
    with open(output / "run" / "summary.csv") as rows:
        last = list(csv.DictReader(rows))[-1]
    return {"wall": wall, "accuracy": float(last["eval_top1"]) / 100}


def timm_layout(ws: Path, root: Path) -> Path:
    """train/ and validation/ folders as timm's ImageFolder reads them: the workspace's own images."""
    root.mkdir()
    (root / "train").symlink_to(ws / "data" / "fashion-mnist")
    (root / "validation").symlink_to(ws / "data" / "fashion-mnist-test")
    return root


def pretrained_file(path: Path) -> Path:
    """The backbone's pretrained weights as timm's ``--pretrained-path`` reads them (a safetensors state dict)."""
    from safetensors.torch import save_file

    from headstart.library.models.backbones import create_pretrained

    save_file(create_pretrained(BACKBONE, WEIGHTS).state_dict(), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", type=Path, help="timm's train.py (without it: headstart run alone)")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="params override for headstart run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["HEADSTART_DVC_REMOTE"] = str(work / "remote")
        weights = pretrained_file(work / "lite0.safetensors") if args.timm_train else None
        print(f"first run: Fashion-MNIST {args.per_class}/class + 1,000 test images, {os.cpu_count()} cores")
        for n in range(args.rounds):
            ws = workspace(work / f"ws{n}", args.per_class)  # no champion, nothing in the store
            data = timm_layout(ws, work / f"timm-data{n}")
            arms = ["headstart run", "timm train.py"] if args.timm_train else ["headstart run"]
            for name in arms if n % 2 == 0 else arms[::-1]:  # A/B, then B/A
                if name == "headstart run":
                    result = headstart_run(ws, work / f"store{n}", args.set)
                else:
                    result = timm_run(args.timm_train, data, weights, work / f"timm{n}", n)
                steps = f"  [{result['steps']}] {result['exports']}" if "steps" in result else ""
                print(f"round {n + 1}: {name:14s} {result['wall']:6.1f} s  test accuracy {result['accuracy']:.4f}"
                      f"{steps}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
