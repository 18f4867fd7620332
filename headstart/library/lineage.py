"""Lineage that travels with every model: code, data, params, run, package versions and the lock file."""

from __future__ import annotations

import hashlib
import re
import subprocess
from importlib import metadata
from pathlib import Path

from headstart.ground.params import Params

DVC_DIR_MD5 = re.compile(r"[0-9a-f]{32}\.dir")  # what `dvc add` of a folder records
GIT_COMMIT = re.compile(r"[0-9a-f]{7,64}(-dirty)?")  # what git_commit records
PACKAGES = (
    "headstart", "torch", "torchvision", "timm", "albumentations", "scikit-learn", "prefect", "dvc",
    "numpy", "scipy", "pillow", "opencv-python-headless", "safetensors", "skops",  # they decide a model's bits too
    "onnx", "onnxscript", "onnxruntime",  # the CPU's feature engine: the export and what runs it
)  # fmt: skip
LOCK_FILE = (
    "requirements.lock"  # pip-compile's lock that `make install` installs (docs/architecture.md, "The lock file")
)
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when the code runs from one


def git_commit(cwd: Path) -> str | None:
    """HEAD's commit with ``-dirty`` when the tree has changes; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide what a model is."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_commit() -> str | None:
    """The commit of the checkout Headstart's code runs from (``-dirty`` with changes); None for an installed
    wheel. The workspace's commit names the data and params, not the code."""
    return git_commit(SOURCE_ROOT) if (SOURCE_ROOT / ".git").exists() else None


def lock_sha256(source_root: Path = SOURCE_ROOT) -> str | None:
    """sha256 of the lock file beside the code's source root, the exact package set `make install` installed;
    None when the code runs from an installed wheel, which carries no lock."""
    try:
        return hashlib.sha256((source_root / LOCK_FILE).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def collect(cwd: Path, params: Params, flow_run_id: str | None) -> dict:
    """The lineage record stored in the model config and the run summary, for a run of ``params``; the train step
    adds ``code_sha256``, the fingerprint of the code it runs.

    ``split`` (the split parameters, and whether a fixed test set was used) lets the gate check that a champion
    was trained under the same split, so none of its training images can sit in today's test split.
    """
    from headstart.library.data.versioning import data_md5_of

    data_dir = Path(params.data.dir)
    return {
        "workspace_commit": git_commit(cwd),  # the data and params' repository
        "headstart_version": package_versions()["headstart"],
        "code_commit": code_commit(),  # the code's own repository, when it runs from a checkout
        "dataset": data_dir.name,
        "data_md5": data_md5_of(data_dir),
        "test_data_md5": data_md5_of(Path(params.data.test_dir)) if params.data.test_dir else None,
        "split": split_lineage(params),
        "params_sha256": params.digest(),
        "flow_run_id": flow_run_id,
        "packages": package_versions(),
        "lock_sha256": lock_sha256(),  # every installed package's version and hash, not only those above
    }


REDACTED = "<redacted: not recorded>"


def recordable_params(params: Params) -> dict:
    """The params as lineage records them: everything, but a webhook URL (often a bearer secret) is never
    written to the registry; ``headstart reproduce`` needs none of it."""
    recorded = params.as_dict()
    if recorded["notify"].get("webhook_url"):
        recorded["notify"]["webhook_url"] = REDACTED
    return recorded


def split_lineage(params: Params) -> dict:
    """The split parameters a model is trained under, as the gate compares them."""
    return {**params.split.model_dump(), "fixed_test_set": params.data.test_dir is not None}


def read_lineage(path: Path) -> dict:
    """The lineage record in ``path``: a registered version's ``lineage.json``, or a file holding it under
    ``"lineage"`` (a model's ``config.json``, a run's ``summary.json``)."""
    import json

    from headstart.ground.errors import DataError

    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; give a version's lineage.json or a model's config.json") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a JSON lineage record ({exc})") from None
    if isinstance(record, dict) and isinstance(record.get("lineage"), dict):
        record = record["lineage"]
    if not isinstance(record, dict) or "data_md5" not in record:
        raise DataError(
            f"{path}: no lineage here (no data_md5); give a version's lineage.json or a model's config.json"
        )
    check_lineage_shape(record, str(path))
    return record


def check_lineage_shape(record: dict, where: str) -> None:
    """DataError naming the field unless the fields a pull or a rebuild acts on have the shape this code writes:
    data md5s as DVC writes them, a commit as a hex id, a dataset name as text (a lineage file is input: it may
    come from anywhere, and a commit is printed as a command to run)."""
    from headstart.ground.errors import DataError

    for key in ("data_md5", "test_data_md5"):
        value = record.get(key)
        if value is not None and not (isinstance(value, str) and DVC_DIR_MD5.fullmatch(value)):
            raise DataError(f"{where}: {key} is not a DVC directory md5 (it holds {str(value)[:80]!r})")
    commit = record.get("workspace_commit")
    if commit is not None and not (isinstance(commit, str) and GIT_COMMIT.fullmatch(commit)):
        raise DataError(f"{where}: workspace_commit is not a git commit id (it holds {str(commit)[:80]!r})")
    if record.get("dataset") is not None and not isinstance(record["dataset"], str):
        raise DataError(f"{where}: dataset is not a name")


def data_versions(lineage: dict) -> dict[str, str]:
    """The data versions a lineage record names, label → DVC md5: the training data and the fixed test set."""
    named = {lineage.get("dataset") or "data": lineage.get("data_md5"), "test data": lineage.get("test_data_md5")}
    return {label: md5 for label, md5 in named.items() if md5}
