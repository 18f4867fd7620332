"""Pretrained vs random initialisation, per backbone family that has weights on this machine.

For the first preset of each family whose ImageNet weights are installed offline (`headstart backbones`), on the
same Fashion-MNIST images (N per class for fitting, the fixed test set of 100 per class), the transfer report as
the evaluate step computes it (``headstart/library/evaluation/transfer.py``): a logistic-regression probe at the
fallback C on the pretrained backbone's frozen features and on a seeded random initialisation's, at the
backbone's pretrained resolution, on the same stratified samples, with the paired bootstrap interval of the gap.

    .venv/bin/python benchmarks/transfer_gap.py [--per-class 100] [--size 224]
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
from headstart.library.data.manifest import build_manifest
from headstart.library.data.split import make_split
from headstart.library.data.transforms import preprocessing_for
from headstart.library.evaluation.transfer import transfer_report
from headstart.library.models.backbones import create_pretrained
from headstart.library.models.model_config import ModelConfig
from headstart.library.models.presets import list_presets
from headstart.library.training.features import feature_store

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=None, help="input size (default: each backbone's pretrained)")
    args = parser.parse_args()
    firsts: dict[str, tuple[str, str]] = {}
    for preset in list_presets():
        if (source := preset.offline_weights()) and preset.family not in firsts:
            firsts[preset.family] = (preset.name, source)
    idx_dir = locate_idx_dir(cache_dir() / "debs")
    with tempfile.TemporaryDirectory() as work:
        pool = export_split(idx_dir, "train", args.per_class, 0, Path(work) / "pool").root
        fixed = export_split(idx_dir, "test", 100, 0, Path(work) / "fixed").root
        print(f"Fashion-MNIST {args.per_class}/class to fit, 100/class to test; families with offline weights: "
              f"{', '.join(firsts) or 'none'}")  # fmt: skip
        columns = ["family", "backbone (weights)", "px", "fit / test images", "pretrained", "random init",
                   "gain [95 % interval]", "seconds"]  # fmt: skip
        print(f"| {' | '.join(columns)} |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for family, (backbone, source) in firsts.items():
            overrides = [f"model.backbone={backbone}", f"model.weights={source}",
                         f"train.feature_cache={Path(work) / 'store'}"]  # fmt: skip
            params = load_params(REPO / "params.yaml", overrides)
            split = make_split(build_manifest(pool).table, pool, params.split, build_manifest(fixed).table, fixed)
            table = split.table
            pre = preprocessing_for(create_pretrained(backbone, "none"), args.size)
            config = ModelConfig(
                backbone=backbone, classes=sorted(table["label"].unique()), head={"pool": params.model.head.pool},
                freeze_stages=0, bn="", preprocessing=pre.to_dict(), scenario="features", lineage={},
                classifier="logreg", features_fit="train+val",
            )  # fmt: skip
            start = time.perf_counter()
            report = transfer_report(config, table, params, feature_store(params))
            print(f"| {family} | {backbone} ({source}) | {pre.input_size} | {report['fit_images']} / "
                  f"{report['test_images']} | {report['pretrained_accuracy']:.3f} | "
                  f"{report['random_init_accuracy']:.3f} | {report['gain']:+.3f} [{report['gain_low']:+.3f}, "
                  f"{report['gain_high']:+.3f}] | {time.perf_counter() - start:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
