"""Importing any class-per-folder image tree into ``data/<name>/``: only regular files from inside the source,
written beside the dataset and swapped in whole, so nothing is lost if the import fails or is killed."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from headstart.ground.errors import ConfigError, DataError
from headstart.ground.paths import NotRegularFile, open_regular, swap_folders

# fullmatch (a final newline is no name): no '..', '/', hidden; short enough for any file system
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
STAGING_MARK = ".incoming-"


@dataclass
class ImportReport:
    """What an import copied, and each path it skipped with the reason."""

    dest: Path
    copied: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def check_dataset_name(name: str) -> str:
    """``name`` when it is a plain folder name (letters, digits, ``._-``, not starting with a dot or dash)."""
    if not DATASET_NAME.fullmatch(name):
        raise ConfigError(
            f"dataset name {name!r}: use up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it becomes the folder data/<name>/)"
        )
    return name


def copy_image_tree(src: Path, dest: Path, replace: bool = False) -> ImportReport:
    """Copy the regular files of ``src`` into ``dest``, skipping hidden files; an existing ``dest`` is replaced only
    with ``replace``, and only once the new tree is complete (swapped in whole; the old one removed after).

    Links are never followed out of ``src``: a link whose target lies outside (or is a folder) is skipped and
    named in the report, as are FIFOs, sockets and devices (never opened).
    """
    if not src.is_dir():
        raise DataError(f"{src}: not a folder; expected one sub-folder of images per class")
    real_src, real_dest = src.resolve(), dest.resolve()
    if real_dest.is_relative_to(real_src):
        raise DataError(
            f"{dest}: is inside the source {src}; choose another name or data folder: "
            f"`headstart data import folder {src} --name NAME --data-root FOLDER`"
        )
    if real_src.is_relative_to(real_dest):
        raise DataError(f"{src}: is inside {dest}, which the import would replace; copy it elsewhere first")
    if dest.exists() and not replace:
        raise DataError(
            f"{dest}: the dataset exists; import a new version over it (the old one is kept until the copy is whole): "
            f"`headstart data import folder {src} --name {dest.name} --replace`"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _import_lock(dest):
        staging_name = re.compile(rf"^\.{re.escape(dest.name)}{STAGING_MARK}[0-9a-f]{{8}}$")
        for leftover in dest.parent.iterdir():  # from an import that was killed (the lock rules out a live one)
            if staging_name.match(leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)
        staging = dest.parent / f".{dest.name}{STAGING_MARK}{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            report = _copy_regular_files(src, real_src, staging, ImportReport(dest))
            os.sync()  # the copy is on disk before the swap makes it the dataset
            if dest.exists():
                swap_folders(staging, dest)  # staging now holds the old tree
            else:
                staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return report


@contextmanager
def _import_lock(dest: Path) -> Iterator[None]:
    """One import into a data folder at a time (another would swap in its own tree, or clear ours as debris): a
    lock on the folder itself, so no lock file is left among the datasets."""
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"{dest.parent}: another import is running there; try again when it ends") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def _copy_regular_files(src: Path, real_src: Path, out: Path, report: ImportReport) -> ImportReport:
    for dirpath, dirnames, filenames in os.walk(src):  # never descends into linked folders
        here = Path(dirpath)
        rel_dir = here.relative_to(src)
        for name in list(dirnames):
            if name.startswith("."):
                dirnames.remove(name)
            elif (here / name).is_symlink():
                dirnames.remove(name)
                report.skipped.append(((rel_dir / name).as_posix(), "link to a folder: not followed"))
        (out / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = (rel_dir / name).as_posix()
            why = _copy_if_regular(here / name, real_src, out / rel_dir / name)
            if why:
                report.skipped.append((rel, why))
            else:
                report.copied += 1
    return report


def _copy_if_regular(path: Path, real_src: Path, dest: Path) -> str | None:
    """Copy a regular file inside the source (or a link to one) and return None; else why it is skipped.

    The file is checked on the descriptor it is copied from (opened without following a last link and without
    blocking), so swapping it for a FIFO or an outside link between the check and the copy gains nothing.
    """
    target = path
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(real_src):
            return f"link leaving the source (to {target}): not followed"
    try:
        source = open_regular(target, follow_last_link=False)
    except NotRegularFile:
        return "not a regular file (FIFO, socket or device): not opened"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    with source, dest.open("wb") as copy:
        shutil.copyfileobj(source, copy)
    return None
