"""The manifest: one row per file in a class-per-folder dataset, built by decoding every image in parallel."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from headstart.ground.errors import DataError
from headstart.ground.paths import NotRegularFile, open_regular
from headstart.library.data.images import ImageTooLarge, open_checked, to_rgb
from headstart.library.data.near_duplicates import THUMBNAIL, thumbnail_of

COLUMNS = ["path", "label", "bytes", "sha256", "width", "height", "mode", "decodable", "error"]


@dataclass(frozen=True)
class Manifest:
    """The manifest table plus what the folder scan found beside the images."""

    root: Path
    table: pd.DataFrame
    classes: list[str]  # every class folder, empty ones included
    ignored: list[str] = field(default_factory=list)  # hidden files and folders, skipped on purpose
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)  # by path: decodable images' 32 px thumbnails


@dataclass(frozen=True)
class _Entry:
    relpath: str
    label: str | None
    problem: str | None = None


def scan_dataset(root: Path) -> tuple[list[_Entry], list[str], list[str]]:
    """Walk ``root``: entries to inspect, class folder names, and skipped hidden paths.

    The label is the top-level folder; images in nested sub-folders belong to that class. Files in the
    root and symlinks leaving the dataset are entries with a problem, so the report names them.
    """
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    real_root = root.resolve()
    entries: list[_Entry] = []
    ignored: list[str] = []
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    for dirpath, dirnames, filenames in os.walk(root):
        current = Path(dirpath)
        for name in [d for d in dirnames if d.startswith(".")]:
            ignored.append((current / name).relative_to(root).as_posix() + "/")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(dirnames):
            if (current / name).is_symlink():
                dirnames.remove(name)
                rel = (current / name).relative_to(root).as_posix()
                entries.append(_Entry(rel, _label_of(rel), "symlinked folder: not followed"))
        for name in sorted(filenames):
            path = current / name
            rel = path.relative_to(root).as_posix()
            if name.startswith("."):
                ignored.append(rel)
                continue
            label = _label_of(rel)
            problem = None
            if label is None:
                problem = "file in the dataset root, not in a class folder"
            elif path.is_symlink() and not path.resolve().is_relative_to(real_root):
                problem = f"symlink points outside the dataset (to {path.resolve()})"
            entries.append(_Entry(rel, label, problem))
    return entries, classes, sorted(ignored)


def _label_of(relpath: str) -> str | None:
    parts = relpath.split("/")
    return parts[0] if len(parts) > 1 else None


def inspect_file(root: Path, entry: _Entry, max_pixels: int, max_file_bytes: int = 100_000_000) -> dict:
    """One manifest row: size, hash, and a full decode; any failure becomes the row's ``error``.

    Only regular files are read: the file is opened without blocking and checked before a byte is read, so a
    FIFO, socket or device is named, never waited on; files over ``max_file_bytes`` are named, not read.
    """
    row = dict.fromkeys(COLUMNS)
    row.update(path=entry.relpath, label=entry.label, decodable=False, error=entry.problem)
    if entry.problem is not None:
        return row
    try:
        data = _read_regular(root / entry.relpath, max_file_bytes)
    except _NotReadable as exc:
        row["error"] = str(exc)
        return row
    row.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    if not data:
        row["error"] = "empty file (0 bytes)"
        return row
    try:
        with open_checked(io.BytesIO(data), max_pixels) as image:
            row["mode"] = image.mode
            rgb = to_rgb(image)  # full decode: truncated files fail here, not at training time
            row.update(width=rgb.width, height=rgb.height, decodable=True, thumbnail=thumbnail_of(rgb))
    except ImageTooLarge as exc:
        row["error"] = str(exc)
    except UnidentifiedImageError:
        row["error"] = "not an image: unrecognised format (is it a text or other file with an image name?)"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        row["error"] = f"cannot decode ({type(exc).__name__}: {exc}); the file is truncated or corrupt"
    return row


class _NotReadable(Exception):
    """Why a dataset entry was not read (the manifest row's error)."""


def _read_regular(path: Path, max_bytes: int) -> bytes:
    try:
        handle = open_regular(path)
    except NotRegularFile:
        raise _NotReadable("not a regular file (a FIFO, socket or device): not read") from None
    except OSError as exc:
        raise _NotReadable(f"cannot read the file ({exc.strerror or exc})") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise _NotReadable(f"{size} bytes, over validate.max_file_bytes={max_bytes}: not read")
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise _NotReadable(f"cannot read the file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # grew while we read
        raise _NotReadable(f"over validate.max_file_bytes={max_bytes} bytes: not read")
    return data


def build_manifest(
    root: Path, max_pixels: int = 50_000_000, workers: int = 4, max_file_bytes: int = 100_000_000
) -> Manifest:
    """Scan ``root`` and inspect every file on a thread pool (hashing and decoding release the GIL)."""
    entries, classes, ignored = scan_dataset(root)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda e: inspect_file(root, e, max_pixels, max_file_bytes), entries))
    thumbnails = {row["path"]: row.pop("thumbnail") for row in rows if "thumbnail" in row}
    table = pd.DataFrame(rows, columns=COLUMNS)
    return Manifest(root=root, table=table, classes=classes, ignored=ignored, thumbnails=thumbnails)


def save_thumbnails(thumbnails: dict[str, np.ndarray], path: Path) -> None:
    """``thumbnails.npz``: one uint8 array per image path plus the paths (no pickle either way)."""
    paths = sorted(thumbnails)
    stacked = np.stack([thumbnails[p] for p in paths]) if paths else np.zeros((0, THUMBNAIL, THUMBNAIL), np.uint8)
    np.savez(path, paths=np.array(paths, dtype=str), thumbnails=stacked)


def load_thumbnails(path: Path) -> dict[str, np.ndarray]:
    """What :func:`save_thumbnails` wrote ({} when absent: the split step decodes again)."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        return dict(zip(stored["paths"].tolist(), stored["thumbnails"], strict=True))
