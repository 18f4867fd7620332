"""The recipe study: Fashion-MNIST at 10/50/200 images per class, 3 seeds, evaluated on a fixed 100/class from the
official test file; each scenario, the candidate recipes and training from scratch. Prints size × recipe →
accuracy (mean ± sd) and wall time of train + evaluate with an empty feature store (a first run); the default
recipe in params.yaml is chosen from this table.

    .venv/bin/python benchmarks/recipes.py [--sizes 10 50 200] [--seeds 0 1 2] [--recipes NAME ...] [--set K=V ...]
        [--combine "auto (default)+finetune-128" tta:finetune-128 ...]

On a GPU worker (the prepared device check): --sizes 50 200 --recipes "auto (default)" plain-finetune
--set train.device=cuda train.num_workers=8 (auto fine-tunes at the backbone's pretrained resolution there).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from headstart.ground.params import load_params
from headstart.ground.paths import cache_dir
from headstart.ground.run_folder import RunFolder
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
from headstart.library.data.manifest import build_manifest
from headstart.library.data.split import make_split
from headstart.library.evaluation.metrics import evaluate
from headstart.library.training.features import feature_store
from headstart.library.training.scenarios import train

REPO = Path(__file__).resolve().parents[1]
COMMON = ["model.input_size=64", "train.num_workers=0", "train.epochs=8"]
RECIPES: dict[str, list[str]] = {
    # the features scenario as first shipped: 64 px features, fitted on the train rows only, C = 1
    "probe-64": [
        "train.scenario=features", "model.features_input_size=64", "train.features_fit=train", "train.classifier_c=1.0",
    ],
    # 224 px (the backbone's pretrained size), fitted on train + val, C by 5-fold cross-validation
    "probe-224": ["train.scenario=features"],
    "probe-224-heldout": ["train.scenario=features", "train.features_fit=train"],  # the same without the val rows
    "probe-224-stages2": ["train.scenario=features", "model.feature_stages=2"],  # the last 2 stages, pooled
    "probe-lite2": ["train.scenario=features", "model.backbone=tf_efficientnet_lite2",
                    "model.weights=package:efficientnet-lite2"],  # a larger backbone's features (260 px)
    "plain-finetune": ["train.scenario=finetune"],
    "finetune-96": ["train.scenario=finetune", "model.input_size=96"],
    "finetune-128": ["train.scenario=finetune", "model.input_size=128"],
    "finetune-224": ["train.scenario=finetune", "model.input_size=224"],  # the pretrained resolution: GPU workers
    "finetune-ema": ["train.scenario=finetune", "train.ema_decay=0.998"],
    "finetune-ema-short": ["train.scenario=finetune", "train.ema_decay=0.99"],  # a horizon of ~100 steps
    "finetune-frozen2": [
        "train.scenario=finetune", "train.freeze_stages=2", "train.warmup_epochs=1", "train.label_smoothing=0.1",
    ],
    "lp-ft": ["train.scenario=hybrid", "train.freeze_stages=2", "train.warmup_epochs=1", "train.label_smoothing=0.1"],
    "lp-ft-128": ["train.scenario=hybrid", "model.input_size=128", "train.freeze_stages=2", "train.warmup_epochs=1",
                  "train.label_smoothing=0.1"],
    "gradual": [
        "train.scenario=finetune", "train.freeze_stages=6", "train.unfreeze_milestones=[2,3,4,5]",
        "train.layer_decay=0.75", "train.warmup_epochs=1", "train.label_smoothing=0.1",
    ],
    "from-scratch": ["train.scenario=finetune", "model.weights=none", "train.freeze_stages=0"],
    "auto (default)": [],  # params.yaml as shipped
}  # fmt: skip


def one_run(idx_dir: Path, size: int, seed: int, recipe: str, work: Path, shared_store: bool, extra: list[str]) -> dict:
    pool = export_split(idx_dir, "train", size, seed, work / f"pool-{size}-{seed}").root
    fixed = export_split(idx_dir, "test", 100, 0, work / "fixed").root
    # an empty feature store: the time of a first run; shared (per seed): the accuracy study's extractions once
    store = work / (f"features-{seed}" if shared_store else f"features-{size}-{seed}-{recipe}")
    overrides = [*COMMON, f"train.seed={seed}", f"train.feature_cache={store}", *RECIPES[recipe], *extra]
    params = load_params(REPO / "params.yaml", overrides)
    split = make_split(build_manifest(pool).table, pool, params.split, build_manifest(fixed).table, fixed).table
    start = time.perf_counter()
    result = train(split, params, RunFolder(work / f"run-{size}-{seed}-{recipe}"), {"data_md5": f"{size}-{seed}"})
    trained = time.perf_counter()
    metrics = evaluate(result.model_dir, split, params.evaluate.batch_size, feature_store(params)).metrics
    if not shared_store:
        shutil.rmtree(store, ignore_errors=True)
    KEPT[(size, seed, recipe)] = (result.model_dir, split, params, time.perf_counter() - start)
    return {
        "size": size,
        "seed": seed,
        "recipe": recipe,
        "scenario": result.config.scenario,
        # what a recipe is chosen on: the validation split (fine-tunes: the last epoch's val accuracy), or for a
        # probe fitted on train + val the cross-validated accuracy of its chosen C; the test set only reports
        "validation": result.history[-1].get("val_accuracy", result.history[-1].get("cv_accuracy")),
        "accuracy": metrics["accuracy"],
        "seconds": time.perf_counter() - start,
        "train_seconds": trained - start,
        "input_size": result.config.pre.input_size,
    }


KEPT: dict[tuple[int, int, str], tuple[Path, object, object, float]] = {}  # model, split, params, seconds


def probabilities_on_test_set(size: int, seed: int, recipe: str, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A finished run's class probabilities on the fixed test set, in split order (and the true classes); ``flip``:
    averaged with those of the horizontally flipped images (test-time augmentation)."""
    from headstart.library.data.loader import ImageTable, make_loader
    from headstart.library.data.transforms import build_transform
    from headstart.library.evaluation.metrics import predict_from_store
    from headstart.library.models.saved_model import load_predictor

    model_dir, split, params, _ = KEPT[(size, seed, recipe)]
    predictor = load_predictor(model_dir)
    test = split[split["split"] == "test"]
    if predictor.classifier is not None and not flip:
        pred = predict_from_store(predictor, test, feature_store(params), params.evaluate.batch_size)
        return pred.y_true, pred.probabilities
    classes = predictor.config.classes
    loader = make_loader(ImageTable(test, classes, build_transform(predictor.config.pre)), 64, False, 0)
    truths, probs = [], []
    for images, targets in loader:
        proba = predictor.predict_proba(images)
        probs.append((proba + predictor.predict_proba(images.flip(3))) / 2 if flip else proba)
        truths.append(targets.numpy())
    return np.concatenate(truths), np.concatenate(probs)


def combined(size: int, seed: int, name: str) -> dict:
    """A lever measured on finished runs, without a model format of its own: ``A+B`` averages two recipes' test
    probabilities (an ensemble; its time is both runs'), ``tta:A`` averages recipe A's on the test images and
    their mirror images. Test accuracy only (no validation figure: a probe fitted on train + val has none)."""
    if name.startswith("tta:"):
        recipe = name.removeprefix("tta:")
        truth, proba = probabilities_on_test_set(size, seed, recipe, flip=True)
        seconds = KEPT[(size, seed, recipe)][3]
    else:
        first, second = name.split("+")
        truth, proba = probabilities_on_test_set(size, seed, first)
        other_truth, other = probabilities_on_test_set(size, seed, second)
        assert (truth == other_truth).all(), "the two runs scored different test rows"
        proba = (proba + other) / 2
        seconds = KEPT[(size, seed, first)][3] + KEPT[(size, seed, second)][3]
    accuracy = float((proba.argmax(1) == truth).mean())
    return {"size": size, "seed": seed, "recipe": name, "accuracy": accuracy, "seconds": seconds}


def table(results: list[dict], sizes: list[int], recipes: list[str], column: str = "accuracy") -> str:
    lines = ["| per class | " + " | ".join(recipes) + " |", "| --- |" + " --- |" * len(recipes)]
    for size in sizes:
        cells = []
        for recipe in recipes:
            accs = [r[column] * 100 for r in results if r["size"] == size and r["recipe"] == recipe and r.get(column)]
            secs = [r["seconds"] for r in results if r["size"] == size and r["recipe"] == recipe]
            if not accs:
                cells.append("–")
                continue
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            runs = "" if len(accs) == 3 else f", n={len(accs)}"
            cells.append(f"{statistics.mean(accs):.1f} ± {sd:.1f} % ({statistics.mean(secs):.0f} s{runs})")
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-recipes.json")
    parser.add_argument("--merge", type=Path, nargs="*", default=[], help="earlier results (JSON) to tabulate too")
    parser.add_argument("--table-sizes", type=int, nargs="*", help="sizes to tabulate (default: --sizes)")
    parser.add_argument("--table-recipes", nargs="*", help="recipes to tabulate (default: --recipes)")
    parser.add_argument(
        "--shared-store", action="store_true", help="one feature store per seed (times: warm after the first run)"
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="K=V", help="overrides after each recipe's own")
    parser.add_argument(
        "--combine", nargs="*", default=[], metavar="A+B|tta:A",
        help="levers on the finished runs: A+B averages two recipes' test probabilities, tta:A adds flipped views",
    )  # fmt: skip
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    idx_dir = locate_idx_dir(cache_dir() / "debs")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for seed in args.seeds:
                for recipe in args.recipes:
                    results.append(one_run(idx_dir, size, seed, recipe, Path(tmp), args.shared_store, args.set))
                    print(json.dumps(results[-1]), flush=True)
                for name in args.combine:
                    results.append(combined(size, seed, name))
                    print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    for path in args.merge:
        results += json.loads(path.read_text())
    print(
        f"\nFashion-MNIST, tf_efficientnet_lite0, fine-tunes 64 px unless named, 8 epochs, features 224 px unless "
        f"named, test = 100/class official test images, "
        f"seeds {args.seeds}, {os.cpu_count()} cores, overrides {args.set}; "
        f"accuracy mean ± sd (mean wall time of train + evaluate)\n"
    )
    sizes, recipes = args.table_sizes or args.sizes, args.table_recipes or [*args.recipes, *args.combine]
    print("Validation (what the default is chosen on):\n" + table(results, sizes, recipes, "validation"))
    print("\nTest (reported only):\n" + table(results, sizes, recipes))


if __name__ == "__main__":
    main()
