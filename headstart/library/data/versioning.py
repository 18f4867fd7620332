"""Dataset versioning through DVC's own Python API: track a folder, push it, read its md5."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from headstart.ground.errors import DataError, ToolError
from headstart.ground.paths import default_dvc_remote

DEFAULT_REMOTE_NAME = "local"


@dataclass(frozen=True)
class TrackedData:
    """A dataset folder under DVC: its ``.dvc`` file, directory md5 and the remote it was pushed to."""

    path: Path
    dvc_file: Path
    md5: str
    remote: str


def find_repo_root(start: Path) -> Path:
    """The enclosing DVC repository root, or a DataError saying how to create one."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Path(Repo.find_root(str(start)))
    except NotDvcRepoError:
        raise DataError(f"{start}: not inside a DVC repository; run `git init && dvc init` there first") from None


def ensure_default_remote(root: Path) -> str:
    """Return the default remote's URL, configuring a local-directory one (outside the git tree) if none.

    The remote goes to ``.dvc/config.local``, which DVC keeps out of git, so configuring it never dirties
    the working tree.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        core = repo.config.get("core", {})
        remotes = repo.config.get("remote", {})
        if core.get("remote") in remotes:
            return remotes[core["remote"]]["url"]
        url = os.environ.get("HEADSTART_DVC_REMOTE") or str(default_dvc_remote())
        with repo.config.edit("local") as conf:
            conf["remote"][DEFAULT_REMOTE_NAME] = {"url": url}
            conf["core"]["remote"] = DEFAULT_REMOTE_NAME
        return url


def track_and_push(folder: Path) -> TrackedData:
    """``dvc add`` the folder and ``dvc push`` it to the default remote; return its new version."""
    from dvc.repo import Repo

    folder = folder.resolve()
    root = find_repo_root(folder)
    remote = ensure_default_remote(root)
    if remote.startswith(("/", ".")) or "://" not in remote:
        Path(root, remote).mkdir(parents=True, exist_ok=True)
    try:
        with Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # the CLI prints its own "commit the .dvc file" hint
            repo.add(str(folder.relative_to(root)))
            repo.push(targets=[str(folder.relative_to(root))])
    except Exception as exc:  # DVC raises many unrelated types; report them as one tool failure
        raise ToolError(f"dvc add/push of {folder} failed: {exc}") from exc
    dvc_file = folder.with_name(folder.name + ".dvc")
    return TrackedData(path=folder, dvc_file=dvc_file, md5=read_dvc_md5(dvc_file), remote=remote)


def read_dvc_md5(dvc_file: Path) -> str:
    """The directory md5 recorded in a ``.dvc`` file: the cheapest "which data version is this?"."""
    try:
        outs = yaml.safe_load(dvc_file.read_text())["outs"]
        return str(outs[0]["md5"])
    except FileNotFoundError:
        raise DataError(f"{dvc_file}: no such file; track the folder with `headstart data import`") from None
    except (KeyError, IndexError, TypeError, yaml.YAMLError):
        raise DataError(f"{dvc_file}: not a DVC file with an output md5") from None


def data_md5_of(folder: Path) -> str | None:
    """md5 of a folder tracked as ``<folder>.dvc`` beside it, or None when it is not tracked."""
    dvc_file = folder.with_name(folder.name + ".dvc")
    return read_dvc_md5(dvc_file) if dvc_file.is_file() else None
