"""``dvc.yaml`` rendered from the pipeline table: one stage per step, each calling ``headstart step NAME``.

A stage's code dependencies are every project source file its step imports (transitively): in the repository
they are named relative to it; in a workspace made by ``headstart init``, where the code is the installed
package, by their absolute path in the installation, so that upgrading the package re-runs what changed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from headstart.ground.params import load_params_or_defaults
from headstart.ground.run_folder import RunFolder
from tasks.pipeline import PIPELINE
from tasks.step import Step

if TYPE_CHECKING:
    from headstart.library.data.own_dataset import OwnDataset

DVC_RUN = Path("runs/dvc")
CACHED_FOLDERS = {"model", "validate", "validate-test", "dashboard"}  # small JSON/CSV files stay out of the cache
ENTRY_NEEDS_FOLDER = {"validate-test": "data.test_dir"}  # written only when params name that folder
HEADER = """\
# Rendered from the pipeline table (tasks/pipeline.py) by `headstart init` / tasks/dvc_stages.py: edit the table,
# not this file. `dvc repro` reproduces a run into runs/dvc/ and is a no-op when nothing changed.
# The gate reads the champion from the registry, which DVC cannot see: after a promotion elsewhere,
# rerun it with `dvc repro -f gate`.
"""


def stage_code_files(step: Step) -> list[Path]:
    """Every project source the stage runs: its own step module's imports and, because ``headstart step`` reads
    upstream results back with their producers' ``load``, those producers' imports too."""
    producers = {entry: s for s in PIPELINE for entry in (*s.writes, *s.metrics, *s.plots)}
    files = set(step.code_files())
    for entry in step.reads:
        files |= set(producers[entry].code_files())
    return sorted(files)


def _code_path(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()


def _folders_named(root: Path) -> set[str]:
    """The data folder keys the workspace's params.yaml sets (``data.test_dir: null`` names none: a ``${...}`` of
    null would make dvc.yaml unreadable to DVC, every ``dvc add`` included)."""
    params = load_params_or_defaults(root / "params.yaml").as_dict()
    return {f"data.{key}" for key, value in params["data"].items() if value is not None}


def _stage(step: Step, root: Path, folders: set[str]) -> dict:
    run = RunFolder(DVC_RUN)
    entry = lambda name: run.entry(name).as_posix()  # noqa: E731
    stage: dict = {"cmd": f"headstart step {step.name} --params params.yaml --out {DVC_RUN.as_posix()}"}
    present = lambda name: ENTRY_NEEDS_FOLDER.get(name, "data.dir") in folders  # noqa: E731
    stage["deps"] = (
        [f"${{{key}}}" for key in step.data_params if key in folders]
        + [entry(name) for name in step.reads if present(name)]
        + [_code_path(path, root) for path in stage_code_files(step)]
    )
    if step.params:
        stage["params"] = list(step.params)
    outs = [entry(n) if n in CACHED_FOLDERS else {entry(n): {"cache": False}} for n in step.writes if present(n)]
    if outs:
        stage["outs"] = outs
    for kind in ("metrics", "plots"):
        if names := getattr(step, kind):
            stage[kind] = [{entry(n): {"cache": False}} for n in names]
    return stage


def render_dvc_yaml(root: Path) -> str:
    """The text of ``dvc.yaml`` for a DVC repository at ``root`` running the installed (or checked-out) code, its
    data dependencies as its params.yaml names them (re-rendered when they change: ``headstart init DIR``)."""
    root = root.resolve()
    folders = _folders_named(root)
    stages = {step.name: _stage(step, root, folders) for step in PIPELINE if step.in_dvc}
    run = RunFolder(DVC_RUN)
    curves, confusion = run.curves.as_posix(), run.confusion.as_posix()
    plots = [
        {curves: {"x": "epoch", "y": {curves: ["train_loss", "val_accuracy"]}}},
        {confusion: {"template": "confusion", "x": "actual", "y": {confusion: "predicted"}}},
    ]
    body = yaml.safe_dump({"stages": stages, "plots": plots}, sort_keys=False, width=120)
    return HEADER + body


def write_dvc_yaml(root: Path) -> Path:
    """Write (or refresh) ``root/dvc.yaml``; atomic, so ``dvc`` never reads half a file."""
    target = root / "dvc.yaml"
    partial = root / "dvc.yaml.partial"
    partial.write_text(render_dvc_yaml(root))
    os.replace(partial, target)
    return target


def init_pipeline_workspace(root: Path, params_template: Path | None = None, remote: str | None = None) -> Path:
    """A workspace (git + DVC, params.yaml, a default remote: ``remote`` when given) with the pipeline's
    ``dvc.yaml``, committed."""
    from headstart.library.data.workspace import commit, init_workspace

    root = init_workspace(root, params_template, remote)
    write_dvc_yaml(root)
    commit(root, "headstart pipeline (dvc.yaml)", ["dvc.yaml"])
    return root


def adopt_own_dataset(root: Path, data: Path, test_data: Path | None = None, name: str | None = None) -> OwnDataset:
    """A user's image folder as the workspace's dataset (:func:`adopt_dataset`), with dvc.yaml re-rendered for the
    folders params.yaml now names, all committed."""
    from headstart.library.data.own_dataset import adopt_dataset
    from headstart.library.data.workspace import commit

    adopted = adopt_dataset(root, data, test_data, name)
    write_dvc_yaml(root)
    commit(root, f"data: {adopted.name} (headstart init --data)", [*adopted.files, "dvc.yaml"])
    return adopted


if __name__ == "__main__":  # python -m tasks.dvc_stages: re-render this repository's dvc.yaml after editing the table
    print(write_dvc_yaml(Path.cwd()))
