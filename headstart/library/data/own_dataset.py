"""A user's own image folder as a workspace's dataset: copied under DVC, pushed, and named by params.yaml, so that
``headstart run``, the schedule and the data-change trigger all train on it with no hand edits."""

from __future__ import annotations

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
    name = check_dataset_name(name if name is not None else data.resolve().name)
    sources = [(data, name)] + ([(test_data, fixed_test_folder(name))] if test_data is not None else [])
    for source, folder in sources:  # every problem named before anything is copied
        if not source.is_dir():
            raise DataError(f"{source}: not a folder; expected one sub-folder of images per class")
        if (workspace / "data" / folder).exists():
            raise DataError(
                f"{workspace / 'data' / folder}: the workspace has this dataset already; import a new version with "
                f"`headstart data import folder {source} --name {folder} --replace`"
            )
    imported = []
    for source, folder in sources:
        report = copy_image_tree(source, workspace / "data" / folder)
        imported.append((report, track_and_push(report.dest)))
    params = {
        "data.dir": f"data/{name}",
        "data.test_dir": f"data/{fixed_test_folder(name)}" if test_data is not None else None,
        "registry.model_name": name,
    }
    set_params_keys(workspace, params)
    tracked = [f"data/{folder}.dvc" for _, folder in sources]
    ignore = ["data/.gitignore"] if (workspace / "data" / ".gitignore").exists() else []
    return OwnDataset(name=name, imported=imported, params=params, files=["params.yaml", *tracked, *ignore])
