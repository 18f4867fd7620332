"""CLI latency: each command that trains nothing, timed as a user runs it (a fresh process), beside `dvc --version`.

Rounds alternate the commands (the order rotates every round), so a noisy neighbour slows them all alike; the
medians are printed with each command's ratio to `dvc --version`'s median from the same run. Printed, never
asserted (these machines vary ~1.5x within an hour).

    .venv/bin/python benchmarks/cli_latency.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HEADSTART = str(BIN / "headstart")


def _registry_with_versions(workspace: Path, count: int) -> str:
    """A file registry holding ``count`` versions (real manifests, metrics and decisions) and a champion."""
    import json

    from headstart.library.evaluation.gate import Decision, RuleResult
    from headstart.library.registry.registry import Registry
    from headstart.library.storage.backends import LocalStorage

    registry = Registry(LocalStorage(workspace / "registry"), "fashion-mnist")
    versions: list[str] = []
    for i in range(count):
        accuracy = 0.7 + 0.05 * i
        champion = versions[-1] if versions else None
        rule = RuleResult("accuracy >= floor", f"{accuracy:.4f}", "0.5000", "PASS")
        files = {
            "model.safetensors": os.urandom(256),
            "config.json": b'{"classes": ["a", "b"]}',
            "decision.json": json.dumps(Decision("PASS", [rule], champion, i).to_dict()).encode(),
        }
        summary = {"decision": "PASS", "metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.01}}
        versions.append(registry.register(files, summary))
        registry.set_champion(versions[-1], "promote", f"beat the last by {0.05:.2f}")
    return versions[-1]


def _tiny_dataset(root: Path, per_class: int = 5) -> Path:
    """15 small PNGs in three class folders."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def _timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        os.environ["HEADSTART_DVC_REMOTE"] = str(base / "remote")
        workspace = base / "ws"
        subprocess.run([HEADSTART, "init", str(workspace)], check=True, capture_output=True)
        champion = _registry_with_versions(workspace, 4)
        _tiny_dataset(workspace / "tiny")
        commands: dict[str, list[str]] = {
            "dvc --version": [str(BIN / "dvc"), "--version"],
            "--help": [HEADSTART, "--help"],
            "--version": [HEADSTART, "--version"],
            "registry ls": [HEADSTART, "registry", "ls"],
            "registry show champion (+ history)": [HEADSTART, "registry", "show", "champion"],
            "registry show VERSION": [HEADSTART, "registry", "show", champion],
            "registry gc": [HEADSTART, "registry", "gc"],
            "report": [HEADSTART, "report", "--out", str(base / "report")],
            "backbones": [HEADSTART, "backbones"],
            "data remote": [HEADSTART, "data", "remote"],
            "init (git + DVC included)": [HEADSTART, "init", "INIT_DIR"],
            "git init + dvc init (init's floor)": [
                "sh",
                "-c",
                f"git init -q INIT_DIR && cd INIT_DIR && {BIN}/dvc init -q",
            ],
            "validate (15 PNGs)": [HEADSTART, "validate", "tiny", "--out", str(base / "validated")],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for round_ in range(args.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                fresh = base / f"init-{round_}-{len(times[name])}-{names.index(name)}"
                command = [part.replace("INIT_DIR", str(fresh)) for part in commands[name]]
                times[name].append(_timed(command, workspace))
                shutil.rmtree(fresh, ignore_errors=True)
        floor = statistics.median(times["dvc --version"])
        print(f"{'command':40s} {'median s':>9s} {'min s':>7s} {'x dvc --version':>16s}   ({args.rounds} rounds)")
        for name in names:
            median = statistics.median(times[name])
            print(f"{name:40s} {median:9.3f} {min(times[name]):7.3f} {median / floor:16.2f}")


if __name__ == "__main__":
    main()
