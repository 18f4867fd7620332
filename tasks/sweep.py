"""Sweeps: a SWEEP.yaml's trials, each trained and scored on the validation split in its own run folder.

A trial is a set of ``--set`` overrides of ``model``, ``train`` or ``augment`` keys. The data steps (validate,
split, health) run once for the whole sweep, so every trial is judged on the same validation rows; the test
split is never looked at here (the chosen trial then goes through evaluate → gate → register → promote).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from headstart.ground.errors import ConfigError
from headstart.ground.params import Params, load_params, read_yaml
from headstart.ground.run_folder import (
    HEALTH,
    HEALTH_REFERENCE,
    NEAR_DUPLICATES,
    SPLIT,
    SWEEP_RECORD,
    TRIAL_RECORD,
    VALIDATE_DATA,
    VALIDATE_TEST,
    RunFolder,
)
from headstart.library import lineage
from headstart.library.data.split import load_split
from headstart.library.evaluation.metrics import evaluate
from headstart.library.training.scenarios import train
from tasks.pipeline import get_step
from tasks.step import code_fingerprint

TRIAL_SECTIONS = ("model", "train", "augment")  # what a trial may change: not the data it is judged on
# What the data steps wrote, copied into each trial's folder.
PREPARED = (VALIDATE_DATA, VALIDATE_TEST, SPLIT, NEAR_DUPLICATES, HEALTH, HEALTH_REFERENCE)


@dataclass(frozen=True)
class Trial:
    """One point of the sweep: its number and the params keys it sets."""

    number: int
    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        """Its run folder's name inside the sweep folder."""
        return f"trial-{self.number:02d}"

    def set_args(self) -> list[str]:
        """The overrides as ``--set key=value`` arguments (JSON values: YAML reads them as they are)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]


MAX_TRIALS = 256  # a sweep's default cap: more trials than a day of this machine's training
MAX_SPEC_BYTES = 64_000  # a SWEEP.yaml is a short list of choices
MAX_VALUE_CHARS = 2_000  # one value of one key, as JSON (an augmentation pipeline fits)


def load_sweep(path: Path, max_trials: int = MAX_TRIALS) -> list[Trial]:
    """The trials of the SWEEP.yaml at ``path`` (see :func:`parse_sweep`)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: sweep file not found") from None
    return parse_sweep(text, str(path), max_trials)


def parse_sweep(text: str, path: str, max_trials: int = MAX_TRIALS) -> list[Trial]:
    """The trials of a SWEEP.yaml: ``grid`` (key → list of values: their product) and/or ``trials`` (a list of
    key → value mappings); with both, every listed trial is crossed with the grid. Keys are dotted params keys
    of the ``model``, ``train`` or ``augment`` sections. Bounded before anything is expanded: the file's size, no
    YAML aliases (a few bytes of nested aliases expand to gigabytes), at most ``max_trials`` trials, each value
    at most :data:`MAX_VALUE_CHARS` long."""
    try:
        if len(text.encode()) > MAX_SPEC_BYTES:
            raise ConfigError(f"{path}: {len(text.encode())} bytes; a sweep file holds at most {MAX_SPEC_BYTES}")
        _refuse_aliases(text, path)
        spec = read_yaml(text)
    except ConfigError:
        raise
    except Exception as exc:  # ruamel raises several YAML error types
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not spec or set(spec) - {"grid", "trials"}:
        raise ConfigError(f"{path}: a sweep is a mapping with `grid` and/or `trials` (found {_keys(spec)})")
    grid, listed = spec.get("grid") or {}, spec.get("trials") or [{}]
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError(f"{path}: `grid` maps each params key to a non-empty list of values")
    if not isinstance(listed, list) or any(not isinstance(t, dict) for t in listed):
        raise ConfigError(f"{path}: `trials` is a list of mappings (params key → value)")
    count = len(listed) * math.prod(len(values) for values in grid.values())  # counted, not expanded
    if count > max_trials:
        raise ConfigError(
            f"{path}: {count} trials; a sweep runs at most {max_trials} "
            "(`headstart sweep SWEEP.yaml --max-trials N` raises the limit)"
        )
    values = [*(v for t in listed for v in t.values()), *(v for vs in grid.values() for v in vs)]
    if too_long := next((v for v in values if len(json.dumps(v, default=str)) > MAX_VALUE_CHARS), None):
        raise ConfigError(f"{path}: a value is over {MAX_VALUE_CHARS} characters ({json.dumps(too_long)[:60]}...)")
    points = [
        {**fixed, **dict(zip(grid, values, strict=True))}
        for fixed in listed
        for values in itertools.product(*grid.values())
    ]
    for key in {k for point in points for k in point}:
        if not isinstance(key, str) or key.split(".")[0] not in TRIAL_SECTIONS:
            raise ConfigError(
                f"{path}: a trial may set {', '.join(TRIAL_SECTIONS)} keys, not {key!r} (every trial is judged on "
                "the same data; change data, split or health settings for the whole sweep: "
                "`headstart sweep SWEEP.yaml --set KEY=VALUE`)"
            )
    return [Trial(number, point) for number, point in enumerate(points)]


def _keys(spec: Any) -> str:
    return ", ".join(map(str, spec)) if isinstance(spec, dict) and spec else type(spec).__name__


def _refuse_aliases(text: str, path: str) -> None:
    """A ConfigError when the YAML uses an alias (``*name``): parsed as events, nothing is built."""
    from ruamel.yaml import YAML
    from ruamel.yaml.events import AliasEvent

    if any(isinstance(event, AliasEvent) for event in YAML(typ="safe", pure=True).parse(text)):
        raise ConfigError(f"{path}: YAML aliases (*name) are not allowed in a sweep file; write each value out")


def trial_params(params_path: Path, overrides: list[str], trial: Trial) -> Params:
    """The params a trial trains with: the file, the sweep's ``--set`` overrides, then the trial's own; a
    features trial is fitted on the train rows only (trials are compared on the validation rows)."""
    try:
        params = load_params(params_path, [*overrides, *trial.set_args()])
    except ConfigError as exc:
        raise ConfigError(f"{trial.name} {trial.overrides}: {exc}") from None
    return params.model_copy(update={"train": params.train.model_copy(update={"features_fit": "train"})})


def run_trial(
    params: Params,
    sweep_root: Path,
    trial: Trial,
    flow_run_id: str | None,
    threads: int | None,
    lineage_from: dict | None = None,
    location: str | None = None,
    on_attempt: Callable[[Path], None] | None = None,
) -> dict:
    """Train one trial in ``sweep_root/trial-NN`` (the sweep's prepared data files copied in) and score it on the
    validation split. Every attempt is recorded in the trial's ``trial.json`` (host, pid, time), so a trial rerun
    after a lost worker shows it; a rerun resumes the trial's checkpoint, and a trial already scored (a sweep run
    again in the same folder) is not trained again: its model may be the one a gate judged.

    ``lineage_from``: lineage entries that come from elsewhere (a remote worker records the coordinator's
    workspace commit and data versions); ``location``: how the row names the trial's folder (default: its path);
    ``on_attempt``: called with the record's path once this attempt is in it (a remote worker sends it on)."""
    run = RunFolder(sweep_root / trial.name)
    earlier = read_record(run.root / TRIAL_RECORD)
    if earlier and earlier.get("overrides") != trial.overrides:
        raise ConfigError(
            f"{run.root}: {trial.name} in this folder was trained with {earlier.get('overrides')}, not "
            f"{trial.overrides} (the sweep file changed); give the sweep a new folder: "
            "`headstart sweep SWEEP.yaml --run-dir NEW_FOLDER`"
        )
    recorded = earlier.get("result")
    if recorded is not None and (run.model / "config.json").is_file():
        return recorded
    if threads:
        torch.set_num_threads(threads)  # this worker's share of the cores; not a param (it changes no result)
    prepare_trial(sweep_root, run.root)
    attempts = _record_attempt(run.root / TRIAL_RECORD, trial)
    if on_attempt is not None:
        on_attempt(run.root / TRIAL_RECORD)
    started = time.monotonic()
    split = load_split(run.split)
    val = validation_rows(split)
    record = {
        **lineage.collect(Path.cwd(), params, flow_run_id),
        **(lineage_from or {}),
        "code_sha256": code_fingerprint([get_step("train")]),
        "sweep_trial": {"sweep": sweep_root.name, "trial": trial.name, "overrides": trial.overrides},
    }
    result = train(split, params, run, record)
    metrics = evaluate(result.model_dir, val, params.evaluate.batch_size).metrics
    row = {
        "trial": trial.name,
        "overrides": trial.overrides,
        "scenario": result.config.scenario,
        "input_size": result.config.pre.input_size,  # auto's choice may differ between a CPU and a GPU worker
        "val_accuracy": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
        "val_images": len(val),
        "seconds": round(time.monotonic() - started, 2),
        "attempts": attempts,
        "run_dir": location or str(run.root),
    }
    write_record(run.root / TRIAL_RECORD, {**read_record(run.root / TRIAL_RECORD), "result": row})
    return row


def validation_rows(split: pd.DataFrame) -> pd.DataFrame:
    """The validation rows, labelled as the evaluator's ``test`` rows; a ConfigError when there are none."""
    val = split[split["split"] == "val"]
    if val.empty:
        raise ConfigError(
            "a sweep chooses its trial on the validation split, and it is empty: raise split.val_fraction"
        )
    return val.assign(split="test")


def prepare_trial(sweep_root: Path, trial_root: Path) -> None:
    """The trial's run folder: the prepared data steps' files (manifests, split, health) copied from the
    sweep's folder, so the chosen trial's folder is a whole run folder for the steps after training. Only those
    files: anything else in the sweep's folder (an earlier run's records) must not be read back as this trial's."""
    trial_root.mkdir(parents=True, exist_ok=True)
    for name in PREPARED:
        entry, target = sweep_root / name, trial_root / name
        if not entry.exists() or target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)


def _record_attempt(path: Path, trial: Trial) -> int:
    record = read_record(path) or {"trial": trial.name, "overrides": trial.overrides, "attempts": []}
    record["attempts"].append({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()})
    write_record(path, record)
    return len(record["attempts"])


def write_record(path: Path, record: dict) -> None:
    """A trial's or sweep's JSON record, replaced whole."""
    partial = path.with_suffix(".tmp")  # replaced whole: a killed worker never leaves half a record
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(path)


def read_record(path: Path) -> dict:
    """A JSON record, or {} when there is none (or half of one)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def best_trial(rows: list[dict], params: Params) -> dict:
    """The trial with the best validation score on ``gate.primary_metric`` (its direction); the first on a tie."""
    key = f"val_{params.gate.primary_metric}"
    sign = 1 if params.gate.direction == "maximize" else -1
    return max(rows, key=lambda row: sign * row[key])


def save_sweep(sweep_root: Path, record: dict) -> Path:
    """``sweep.json``: the spec, every trial (done or failed) and the chosen one."""
    path = sweep_root / SWEEP_RECORD
    path.write_text(json.dumps(record, indent=2))
    return path
