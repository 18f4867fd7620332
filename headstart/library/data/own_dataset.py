"""A user's own image folder as a workspace's dataset: copied under DVC, pushed, and named by params.yaml, so that
``headstart run``, the schedule and the data-change trigger all train on it with no hand edits."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from headstart.ground.errors import DataError
from headstart.library.data.folder_import import ImportReport, check_dataset_name, copy_image_tree
from headstart.library.data.versioning import TrackedData, track_and_push
from headstart.library.data.workspace import set_params_keys


@dataclass(frozen=True)
class OwnDataset:
    """What adopting a folder did: the imports (the training pool, then the test set when given), the params it
    wrote, and the files to commit."""

    name: str
    imported: list[tuple[ImportReport, TrackedData]]
    params: dict[str, str | None]
    files: list[str]


def fixed_test_folder(name: str) -> str:
    """The folder a dataset's fixed test set is imported to: ``data/<name>-test``."""
    return f"{name}-test"


def adopt_dataset(workspace: Path, data: Path, test_data: Path | None = None, name: str | None = None) -> OwnDataset:
    """Copy ``data`` (and ``test_data``) into ``data/<name>/`` (``data/<name>-test/``), track and push them with
    DVC, and write params.yaml to name them and a model called ``name``; the caller commits ``files``.

    ``name`` defaults to the folder's own name. Without ``test_data`` the test split is drawn from the dataset by
    content hash (``data.test_dir: null``). Names are checked before anything is copied.
    """
    name, sources = check_sources(workspace, data, test_data, name)
    params = {
        "data.dir": f"data/{name}",
        "data.test_dir": f"data/{fixed_test_folder(name)}" if test_data is not None else None,
        "registry.model_name": name,
    }
    imported = []
    try:
        for source, folder in sources:
            report = copy_image_tree(source, workspace / "data" / folder)
            imported.append((report, track_and_push(report.dest)))
        set_params_keys(workspace, params)  # atomic, and last: params.yaml names the data only once it is there
    except BaseException:
        for _, folder in sources:  # nothing half-adopted stays: a rerun of init finds the workspace as it was
            shutil.rmtree(workspace / "data" / folder, ignore_errors=True)
            (workspace / "data" / f"{folder}.dvc").unlink(missing_ok=True)
        raise
    tracked = [f"data/{folder}.dvc" for _, folder in sources]
    ignore = ["data/.gitignore"] if (workspace / "data" / ".gitignore").exists() else []
    return OwnDataset(name=name, imported=imported, params=params, files=["params.yaml", *tracked, *ignore])


def check_sources(
    workspace: Path, data: Path, test_data: Path | None, name: str | None
) -> tuple[str, list[tuple[Path, str]]]:
    """The dataset's name and (source, folder under data/) pairs, every problem named before anything is made or
    copied: a bad name, a missing folder, a dataset the workspace has, a source that holds the workspace, a test set
    that is (or holds, or lies in) the training data."""
    name = check_dataset_name(name if name is not None else data.resolve().name)
    sources = [(data, name)] + ([(test_data, fixed_test_folder(name))] if test_data is not None else [])
    real_workspace = workspace.resolve()
    for source, folder in sources:
        if not source.is_dir():
            raise DataError(f"{source}: not a folder; expected one sub-folder of images per class")
        if real_workspace.is_relative_to(source.resolve()):
            raise DataError(f"{source}: holds the workspace {workspace}; make the workspace outside your images")
        if (workspace / "data" / folder).exists():
            raise DataError(
                f"{workspace / 'data' / folder}: the workspace has this dataset already; import a new version with "
                f"`headstart data import folder {source} --name {folder} --replace`"
            )
    if len(sources) == 2:
        (train, _), (test, _) = sources
        real_train, real_test = train.resolve(), test.resolve()
        if real_test.is_relative_to(real_train) or real_train.is_relative_to(real_test):
            raise DataError(f"{test}: the test set overlaps the training images {train}; give separate folders")
    return name, sources
