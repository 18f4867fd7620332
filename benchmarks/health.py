"""Data health cost against validation alone, on Fashion-MNIST (default 1,000 images per class = 10,000 images).

Measured side by side, alternating A/B/A/B in one run (these machines vary ~1.5x between runs); ratios printed,
never asserted. Goal: validation + health <= 2x validation alone, with the backbone features already cached (the
features scenario and the hybrid head start extract them anyway; the cold extraction is printed on its own).

    .venv/bin/python benchmarks/health.py [--per-class 1000] [--rounds 2] [--set health.within_duplicates=false]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from headstart.ground.params import load_params
from headstart.ground.paths import cache_dir
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
from headstart.library.data.leakage import find_duplicates
from headstart.library.data.split import make_split
from headstart.library.data.validation import validate_dataset
from headstart.library.health.checkup import examine, health_extractor
from headstart.library.training.features import training_features

REPO = Path(__file__).resolve().parents[1]


def validation_only(pool: Path, params) -> float:
    start = time.perf_counter()
    validate_dataset(pool, params.validate_)
    return time.perf_counter() - start


def validation_and_health(pool: Path, params) -> tuple[float, dict]:
    """Validate, split, near duplicates, label issues and drift (against the run's own reference: the figures
    cost the same as against a champion's)."""
    from dataclasses import replace

    from headstart.library.health.checkup import compare

    start = time.perf_counter()
    manifest, _ = validate_dataset(pool, params.validate_)
    split = make_split(manifest.table, pool, params.split)
    marks = {"validate + split": time.perf_counter() - start}
    known = {str(pool / path): t for path, t in manifest.thumbnails.items()}  # taken while validating
    duplicates = find_duplicates(split.table, params.health, params.validate_.workers, known)
    marks["near duplicates"] = time.perf_counter() - start - sum(marks.values())
    split = replace(split, duplicates=duplicates)
    report, reference = examine(split, params, None)
    marks["features (cached) + label issues"] = time.perf_counter() - start - sum(marks.values())
    compare(reference, "self", reference.features, [reference.classes[i] for i in reference.labels], params)
    marks["drift"] = time.perf_counter() - start - sum(marks.values())
    return time.perf_counter() - start, {**marks, "label issues": report.label_issues["fraction"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--set", action="append", default=[], help="params override, e.g. health.within_duplicates=false"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        pool = export_split(locate_idx_dir(cache_dir() / "debs"), "train", args.per_class, 0, Path(work) / "pool").root
        params = load_params(
            REPO / "params.yaml", [f"train.feature_cache={work}/features", "train.num_workers=0", *args.set]
        )
        images = args.per_class * 10
        manifest, _ = validate_dataset(pool, params.validate_)  # warm the page cache for both sides
        split = make_split(manifest.table, pool, params.split)
        model, extractor = health_extractor(params)  # the health step's own (size, stages): its store entries
        start = time.perf_counter()
        rows, _ = training_features(model, split.table, extractor, params)
        cold = time.perf_counter() - start
        print(f"feature extraction, cold cache: {len(rows)} images in {cold:.1f} s ({len(rows) / cold:.0f} img/s)")
        validation, health = [], []
        for n in range(args.rounds):
            validation.append(validation_only(pool, params))
            seconds, marks = validation_and_health(pool, params)
            health.append(seconds)
            print(f"round {n + 1}: validation {validation[-1]:.1f} s | with health {seconds:.1f} s "
                  + " ".join(f"[{k} {v:.1f}]" if k != "label issues" else f"[flagged {v:.1%}]"
                             for k, v in marks.items()))  # fmt: skip
        a, b = min(validation), min(health)
        print(f"{images} images: validation only {images / a:.0f} img/s, with health {images / b:.0f} img/s; "
              f"with health / validation only = {b / a:.2f}x (goal <= 2x)")  # fmt: skip


if __name__ == "__main__":
    main()
