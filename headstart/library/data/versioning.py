"""Dataset versioning through DVC's own Python API: track a folder, push it, pull a version, read its md5.

The DVC remote is machine-local configuration (``.dvc/config.local``, which DVC keeps out of git): a local folder
or ``s3://bucket/prefix``. For S3 only the URL is written; the endpoint and credentials are read from the standard
AWS environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or a profile) by
botocore at push and pull time, as the registry's S3 backend reads them, so no file holds them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from headstart.ground.errors import ConfigError, DataError, ToolError
from headstart.ground.paths import default_dvc_remote

DEFAULT_REMOTE_NAME = "local"  # a local-folder remote (the name workspaces have always used)
S3_REMOTE_NAME = "s3"
REMOTE_ENV = "HEADSTART_DVC_REMOTE"
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # a URL scheme (two letters at least: not a drive letter)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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
        raise DataError(
            f"{start}: not inside a workspace (a DVC repository); make one with `headstart init DIR`"
        ) from None


def check_remote_url(url: str) -> str:
    """``url`` as the DVC remote will hold it: ``s3://bucket[/prefix]`` unchanged (trailing ``/`` dropped), a local
    path made absolute; anything else is a ConfigError naming the problem."""
    url = url.strip()
    if not url:
        raise ConfigError("DVC remote: empty URL; give s3://BUCKET/PATH or a local folder")
    if not _SCHEME.match(url):
        return str(Path(url).expanduser().resolve())
    parts = urlsplit(url)
    if parts.scheme == "s3" and not url[len(parts.scheme) :].startswith("://"):
        raise ConfigError(f"DVC remote {url!r}: expected s3://BUCKET/PATH")
    if parts.scheme != "s3":
        raise ConfigError(
            f"DVC remote {url!r}: unsupported scheme {parts.scheme + ':'!r}; use s3://BUCKET/PATH or a local folder"
        )
    if "@" in parts.netloc:
        raise ConfigError(
            f"DVC remote {parts.scheme}://…@{parts.netloc.rsplit('@', 1)[1]}: credentials do not belong in the URL; "
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in the environment"
        )
    if not _BUCKET.fullmatch(parts.netloc):
        raise ConfigError(
            f"DVC remote {url!r}: {parts.netloc!r} is not an S3 bucket name (3-63 lowercase letters, digits, '.', '-')"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"DVC remote {url!r}: no query or fragment allowed; use s3://BUCKET/PATH")
    return f"s3://{parts.netloc}{parts.path}".rstrip("/")


def configured_remote(root: Path) -> str | None:
    """The URL of the repository's default remote (any config level), or None when it has none."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        core, remotes = repo.config.get("core", {}), repo.config.get("remote", {})
        return remotes[core["remote"]]["url"] if core.get("remote") in remotes else None


def set_remote(root: Path, url: str) -> str:
    """Make ``url`` (checked by :func:`check_remote_url`) the repository's default remote, in ``.dvc/config.local``
    only: the committed ``.dvc/config`` is never touched, and no endpoint or credential is written."""
    from dvc.repo import Repo

    url = check_remote_url(url)
    name = S3_REMOTE_NAME if url.startswith("s3://") else DEFAULT_REMOTE_NAME
    with Repo(str(root)) as repo, repo.config.edit("local") as conf:
        conf["remote"][name] = {"url": url}
        conf["core"]["remote"] = name
    return url


def ensure_default_remote(root: Path) -> str:
    """Return the default remote's URL, configuring ``$HEADSTART_DVC_REMOTE`` or else a local-directory one
    (outside the git tree) if none.

    The remote goes to ``.dvc/config.local``, which DVC keeps out of git, so configuring it never dirties
    the working tree.
    """
    if (url := configured_remote(root)) is not None:
        return url
    return set_remote(root, os.environ.get(REMOTE_ENV) or str(default_dvc_remote()))


def track_and_push(folder: Path) -> TrackedData:
    """``dvc add`` the folder and ``dvc push`` it to the default remote; return its new version."""
    from dvc.repo import Repo

    folder = folder.resolve()
    root = find_repo_root(folder)
    remote = ensure_default_remote(root)
    if "://" not in remote:
        Path(root, remote).mkdir(parents=True, exist_ok=True)
    try:  # DVC places stages by the working directory: work from the repository's root, wherever this runs
        with contextlib.chdir(root), Repo(str(root)) as repo:
            repo.scm_context.quiet = True  # the CLI prints its own "commit the .dvc file" hint
            repo.add(str(folder.relative_to(root)))
            repo.push(targets=[str(folder.relative_to(root))])
    except Exception as exc:  # DVC raises many unrelated types; report them as one tool failure
        raise ToolError(f"dvc add/push of {folder} failed: {str(exc) or type(exc).__name__}") from exc
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


def tracked_datasets(root: Path) -> dict[str, Path]:
    """Every ``.dvc`` file of the repository (imported datasets, not dvc.yaml's stages), by the md5 it records."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(root)) as repo:
        stages = [s for s in repo.index.stages if not isinstance(s, PipelineStage) and s.outs]
        return {s.outs[0].hash_info.value: Path(s.path) for s in stages if s.outs[0].hash_info}


def pull(root: Path, dvc_files: list[Path] | None = None) -> list[TrackedData]:
    """``dvc pull`` of the given ``.dvc`` files (every imported dataset when None) from the default remote
    (``$HEADSTART_DVC_REMOTE`` or the local default when none is configured); return what is now checked out."""
    from dvc.repo import Repo

    root = root.resolve()
    files = sorted(tracked_datasets(root).values()) if dvc_files is None else [f.resolve() for f in dvc_files]
    if not files:
        raise DataError(f"{root}: no dataset tracked by DVC here; import one with `headstart data import`")
    if absent := [str(f) for f in files if not f.is_file()]:
        raise DataError(
            f"{', '.join(absent)}: no such .dvc file; name an imported dataset (or none, to pull every one)"
        )
    remote = ensure_default_remote(root)
    try:
        with Repo(str(root)) as repo:
            repo.pull(targets=[str(f) for f in files])
    except Exception as exc:  # DVC raises many unrelated types; report them as one tool failure
        raise ToolError(f"dvc pull from {remote} failed: {exc}") from exc
    return [TrackedData(path=f.with_suffix(""), dvc_file=f, md5=read_dvc_md5(f), remote=remote) for f in files]


def pull_versions(root: Path, versions: dict[str, str], commit: str | None = None) -> list[TrackedData]:
    """Pull exactly the data versions named (label → DVC md5, as lineage records them): each must be the md5 of a
    ``.dvc`` file in the working tree, else a DataError names the workspace ``commit`` to check out first."""
    if not versions:
        raise DataError("the lineage names no DVC data version: its data was not tracked by DVC when the run read it")
    by_md5 = tracked_datasets(root.resolve())
    missing = {label: md5 for label, md5 in versions.items() if md5 not in by_md5}
    if missing:
        named = ", ".join(f"{label} {md5}" for label, md5 in missing.items())
        hint = "check out the commit that recorded it"
        if commit:
            sha = commit.removesuffix("-dirty")
            hint = f"check out the run's workspace commit first: git checkout {sha}"
            if commit.endswith("-dirty"):
                hint += " (the run's workspace had uncommitted changes there: its .dvc file may not be in git)"
        raise DataError(f"no .dvc file here records {named}; {hint}")
    return pull(root, [by_md5[md5] for md5 in versions.values()])


def dvc_init(root: Path, no_scm: bool = False, force: bool = False) -> None:
    """``dvc init`` without DVC's "Initialized DVC repository" banner (Headstart says what it made)."""
    from dvc.repo import Repo

    init_log = logging.getLogger("dvc.repo.init")
    level, init_log.level = init_log.level, logging.WARNING
    try:
        Repo.init(str(root), no_scm=no_scm, force=force).close()
    finally:
        init_log.setLevel(level)


def checkout_versions(root: Path, folders: dict[str, str], remote: str) -> list[TrackedData]:
    """In a new DVC repository at ``root`` (no git: nothing here is ever committed), check out each data version
    (folder relative to ``root`` → DVC directory md5, as lineage records them) from ``remote``: a ``.dvc`` file
    naming exactly that md5, then ``dvc pull``. A version the remote lacks is a DataError naming its md5."""
    from dvc.repo import Repo

    root.mkdir(parents=True, exist_ok=True)
    dvc_init(root, no_scm=True, force=True)  # a scratch folder of reproduce's own
    set_remote(root, remote)
    pulled = []
    for folder, md5 in folders.items():
        target = root / folder
        target.parent.mkdir(parents=True, exist_ok=True)
        dvc_file = target.with_name(target.name + ".dvc")
        entry = {"md5": md5, "hash": "md5", "path": target.name}  # hash: md5 is DVC 3's (no dos2unix)
        dvc_file.write_text(yaml.safe_dump({"outs": [entry]}))
        try:
            with Repo(str(root)) as repo:
                repo.pull(targets=[str(dvc_file)])
        except Exception as exc:  # DVC raises many unrelated types; which version failed is what matters
            raise DataError(
                f"data version {md5} ({folder}) could not be pulled from DVC remote {remote}: {exc}. Push it from "
                "a workspace that has it (`dvc push`), or name the remote that holds it (`headstart data remote URL`; "
                "`headstart reproduce VERSION --remote URL`)"
            ) from None
        pulled.append(TrackedData(path=target, dvc_file=dvc_file, md5=md5, remote=remote))
    return pulled
