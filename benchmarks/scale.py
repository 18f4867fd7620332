"""How cost grows with the data: validate, split, feature extraction, health, a features-scenario retrain and one
fine-tune epoch on Fashion-MNIST at 1k, 10k and 60k images (60k: the whole official training file).

Each step runs as its own process (``headstart step NAME``, as ``dvc repro`` runs it), so its wall time and
its peak resident memory (``wait4``'s ``ru_maxrss``) are its own. Figures, never asserted; goals:
every step's time at 60k within 7x its time at 10k, memory flat in the number of images (features excepted),
validation >= 3,000 images/s. Beside validation, the bare cost of decoding the same files with Pillow in one
process (``decode``): the ratio is the figure. ``--photos N`` also validates N photo-sized (640x480) JPEGs.

    .venv/bin/python benchmarks/scale.py [--sizes 1000,10000,60000] [--finetune-sizes 1000,10000]
        [--steps validate,decode,split,extract,health,train] [--photos 2000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from headstart.ground.paths import cache_dir
from headstart.library.data.fashion_mnist import export_split, locate_idx_dir

REPO = Path(__file__).resolve().parents[1]
TEST_PER_CLASS = 100
# One step in its own process: everything imported first, then only the step's work is timed. Peak RSS of the
# process (getrusage), and its RSS once imported, so the step's own share shows (num_workers=0: no children).
RUNNER = """
import json, resource, sys, time
from pathlib import Path
import torch, timm, sklearn.linear_model, great_expectations  # imported before the clock, as in a worker
from PIL import Image
from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.split import load_split
from headstart.library.health.checkup import health_extractor
from headstart.library.training.features import training_features
from tasks.pipeline import steps_by_name
from tasks.step import StepContext
name, params_path, out = sys.argv[1:4]
ctx = StepContext(load_params(params_path), RunFolder(Path(out)), steps_by_name())
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
if name == "decode":  # the bare cost: Pillow decoding every file of the dataset in this one process
    folders = [ctx.params.data.dir] + ([ctx.params.data.test_dir] if ctx.params.data.test_dir else [])
    for path in sorted(p for folder in folders for p in Path(folder).rglob("*.*")):
        with Image.open(path) as image:
            image.load()
elif name == "extract":
    model, extractor = health_extractor(ctx.params)  # what the features scenario and health read from the store
    training_features(model, load_split(ctx.run.split), extractor, ctx.params)
else:
    ctx.steps[name].run(ctx)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": peak, "imported_mib": imported}))
"""


def measured(step: str, params: Path, out: Path) -> tuple[float, float, float]:
    """The step's own seconds, the process's peak RSS and its RSS once imported (MiB)."""
    log = out.parent / "step.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, step, str(params), str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=sink
        )
        stdout, _ = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"step {step} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    figures = json.loads(stdout.decode().strip().splitlines()[-1])
    return figures["seconds"], figures["peak_mib"], figures["imported_mib"]


def params_file(work: Path, pool: Path, fixed: Path, name: str, **train) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {"dir": str(pool), "test_dir": str(fixed) if fixed else None}
    params["health"]["drift"] = False  # no registry here: drift needs a champion's reference
    # the features retrain reads the health step's vectors (extracted by the "extract" row): its row is the
    # classifier's own cost, extraction's growth is measured on its own
    params["model"]["features_input_size"] = params["health"]["input_size"]
    params["train"].update(feature_cache=str(work / "features"), num_workers=0, **train)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


Row = tuple[str, float, float, float]  # step, seconds, peak RSS MiB, RSS once imported MiB


STEPS = {  # label, as the step runs: in pipeline order (each needs the ones before it that are chosen)
    "validate": "validate",
    "decode": "bare decode (Pillow, 1 process)",
    "split": "split (near duplicates)",
    "extract": "feature extraction",
    "health": "health (features cached)",
    "train": "retrain (features, cached)",
}


def one_size(idx: Path, fixed: Path, images: int, root: Path, finetune: bool, steps: list[str]) -> list[Row]:
    """Every chosen step at one dataset size, in pipeline order, each in a fresh process."""
    work = root / f"n{images}"
    pool = export_split(idx, "train", images // 10, 0, work / "pool").root
    return steps_on(work, pool, fixed, finetune, steps)


def steps_on(work: Path, pool: Path, fixed: Path | None, finetune: bool, steps: list[str]) -> list[Row]:
    run = work / "run"
    work.mkdir(parents=True, exist_ok=True)
    features = params_file(work, pool, fixed, "features", scenario="features")
    rows = [(STEPS[step], *measured(step, features, run)) for step in STEPS if step in steps]
    if finetune:
        epoch = params_file(work, pool, fixed, "finetune", scenario="finetune", epochs=1)
        (work / "ft").mkdir()
        (work / "ft" / "split.csv").write_bytes((run / "split.csv").read_bytes())
        rows.append(("finetune, 1 epoch", *measured("train", epoch, work / "ft")))
    return rows


def show(images: int, rows: list[Row]) -> None:
    for name, wall, peak, imported in rows:
        print(
            f"{images:>6}  {name:<32} {wall:8.1f} {images / wall:8.0f} {peak:6.0f} MiB {imported:5.0f} MiB", flush=True
        )
    by_name = {row[0]: row[1] for row in rows}
    if {STEPS["validate"], STEPS["decode"]} <= by_name.keys():
        print(f"{'':>6}  validation / bare decode (img/s): {by_name[STEPS['decode']] / by_name[STEPS['validate']]:.2f}")


def photo_sized(idx: Path, count: int, dest: Path) -> Path:
    """``count`` Fashion-MNIST images enlarged to 640x480 and saved as JPEG (quality 90), ten classes."""
    from PIL import Image

    small = export_split(idx, "train", -(-count // 10), 1, dest.parent / "photo-source").root
    for path in sorted(small.rglob("*.png"))[:count]:
        out = dest / path.parent.name / f"{path.stem}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").resize((640, 480), Image.BICUBIC).save(out, "JPEG", quality=90)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,60000")
    parser.add_argument("--finetune-sizes", default="1000,10000", help="sizes that also time one fine-tune epoch")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"which of {', '.join(STEPS)}")
    parser.add_argument("--photos", type=int, default=0, help="also validate this many 640x480 JPEGs")
    args = parser.parse_args()
    steps = args.steps.split(",")
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}: choose from {', '.join(STEPS)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    tuned = {int(s) for s in args.finetune_sizes.split(",") if s}
    idx = locate_idx_dir(cache_dir() / "debs")
    results: dict[int, list[Row]] = {}
    print(f"(validate and split also read the {TEST_PER_CLASS * 10} fixed test images; img/s counts training images)")
    print(f"{'images':>6}  {'step':<32} {'seconds':>8} {'img/s':>8} {'peak RSS':>9} {'imported':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fixed = export_split(idx, "test", TEST_PER_CLASS, 0, root / "fixed").root
        for images in sizes:
            results[images] = one_size(idx, fixed, images, root, images in tuned, steps)
            show(images, results[images])
        if args.photos:
            photos = photo_sized(idx, args.photos, root / "photos")
            print(f"\n{args.photos} photo-sized JPEGs (640x480, quality 90), no test folder:")
            show(args.photos, steps_on(root / "photo-run", photos, None, False, ["validate", "decode"]))
    print("\nGrowth against the size before (goal: time ratio <= images ratio; memory flat but for the features):")
    for small, large in itertools.pairwise(sizes):
        before = {row[0]: row for row in results[small]}
        for name, wall, peak, imported in results[large]:
            if name in before:
                _, wall0, peak0, imported0 = before[name]
                grew = (peak - imported) - (peak0 - imported0)
                print(
                    f"  {name:<32} {large}/{small} = {large / small:.0f}x images: time {wall / wall0:.2f}x, "
                    f"peak RSS {peak / peak0:.2f}x ({grew:+.0f} MiB above the imports)"
                )


if __name__ == "__main__":
    main()
