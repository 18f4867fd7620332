"""Importing any class-per-folder image tree into ``data/<name>/``."""

from __future__ import annotations

import shutil
from pathlib import Path

from headstart.ground.errors import DataError


def copy_image_tree(src: Path, dest: Path) -> Path:
    """Copy ``src`` to ``dest`` (replacing it), skipping hidden files; symlinks are copied as their targets.

    The copy goes to a staging folder first, so a failed import leaves the previous version intact.
    """
    if not src.is_dir():
        raise DataError(f"{src}: not a folder; expected one sub-folder of images per class")
    if dest.resolve().is_relative_to(src.resolve()):
        raise DataError(f"{dest}: is inside the source {src}; choose another --name or --data-root")
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging, ignore=shutil.ignore_patterns(".*"), ignore_dangling_symlinks=True)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest
