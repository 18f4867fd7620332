"""P8: what a data-triggered retrain costs when only some images are new.

A workspace with Fashion-MNIST (``--per-class`` 200: 2,000 images, and a fixed test set) is run once (features
scenario) to fill the feature store and register a champion; then 10 % new images are imported (a new DVC data
version). From that same state the retrain runs again, alternating A/B/A/B, each time in a fresh copy of the
workspace: A with the store the first run left, B with an empty store. Printed: feature-extraction time (the
seconds every step spent in the backbone, from the runs' own log lines) and the whole ``headstart run`` wall time,
and their ratios B / A (goals: >= 8x and >= 3x).

    .venv/bin/python benchmarks/incremental.py [--per-class 200] [--new-fraction 0.1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flows.services import Services, start_server  # noqa: E402
from tests.support.seaweedfs import free_ports  # noqa: E402

HEADSTART = str(Path(sys.executable).with_name("headstart"))
EXTRACTED = re.compile(r"features of \d+ images: \d+ from the store, (\d+) extracted in ([\d.]+) s")


def headstart(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run the CLI; its output (the run's log lines included), or the failure with its last lines."""
    done = subprocess.run([HEADSTART, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"headstart {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def retrain(workspace: Path, store: Path, env: dict[str, str], run: str) -> tuple[float, float, int]:
    """One ``headstart run`` (features scenario, this store): wall seconds, extraction seconds, images extracted."""
    start = time.perf_counter()
    sets = ["train.scenario=features", f"train.feature_cache={store}"]
    output = headstart(["run", "--run-dir", f"runs/{run}", *[a for s in sets for a in ("--set", s)]], workspace, env)
    wall = time.perf_counter() - start
    found = [(int(n), float(s)) for n, s in EXTRACTED.findall(output)]
    if not found:
        raise SystemExit(f"no extraction lines in the run's output:\n{output[-3000:]}")
    return wall, sum(s for _, s in found), sum(n for n, _ in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--new-fraction", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        [port] = free_ports(1)
        server, api_url = start_server(port, work / "prefect", work / "prefect.log")
        env = {
            **os.environ, "PREFECT_API_URL": api_url, "HEADSTART_DVC_REMOTE": str(work / "remote"),
            "NO_ALBUMENTATIONS_UPDATE": "1",
        }  # fmt: skip
        try:
            base, warm_store = work / "base", work / "store-v1"
            headstart(["init", str(base)], work, env)
            import_data = ["data", "import", "fashion-mnist", "--test-per-class", "100", "--per-class"]
            headstart([*import_data, str(args.per_class)], base, env)
            wall, seconds, images = retrain(base, warm_store, env, "v1")
            print(f"first run (v1, {args.per_class * 10} images, empty store): {wall:.0f} s, extracted {images} "
                  f"images in {seconds:.0f} s")  # fmt: skip
            transfer = json.loads((base / "runs/v1/metrics.json").read_text()).get("transfer")
            print(f"  its transfer report: {transfer}")
            grown = round(args.per_class * (1 + args.new_fraction))
            headstart([*import_data, str(grown)], base, env)  # a superset: the same images plus the new ones
            print(f"v2: {grown * 10} images ({(grown - args.per_class) * 10} new); retrain A = the v1 store, "
                  f"B = an empty store, alternating")  # fmt: skip
            results: dict[str, list[tuple[float, float, int]]] = {"A": [], "B": []}
            for n in range(args.rounds):
                for arm in ("A", "B"):
                    trial = work / f"trial-{n}-{arm}"
                    shutil.copytree(base, trial, symlinks=True)
                    store = work / f"store-{n}-{arm}"
                    if arm == "A":
                        shutil.copytree(warm_store, store)
                    results[arm].append(retrain(trial, store, env, "v2"))
                    wall, seconds, images = results[arm][-1]
                    print(f"  round {n + 1} {arm}: run {wall:6.1f} s | extraction {seconds:6.1f} s "
                          f"({images} images)", flush=True)  # fmt: skip
                    shutil.rmtree(trial)
                    shutil.rmtree(store)
        finally:
            Services(api_url, processes=[server]).stop()
    a_wall, b_wall = (statistics.median(r[0] for r in results[arm]) for arm in "AB")
    a_ext, b_ext = (statistics.median(r[1] for r in results[arm]) for arm in "AB")
    print(f"P8 extraction: empty store / previous store = {b_ext:.1f} s / {a_ext:.1f} s = {b_ext / a_ext:.1f}x "
          f"(goal >= 8x)")  # fmt: skip
    print(f"P8 whole run:  empty store / previous store = {b_wall:.1f} s / {a_wall:.1f} s = {b_wall / a_wall:.1f}x "
          f"(goal >= 3x)")  # fmt: skip


if __name__ == "__main__":
    main()
