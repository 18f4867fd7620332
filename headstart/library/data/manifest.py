"""The manifest: one row per file in a class-per-folder dataset, built by decoding every image in parallel."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from headstart.ground.errors import DataError
from headstart.library.data.inspection import COLUMNS, Entry, exit_with_parent, inspect_many
from headstart.library.data.near_duplicates import THUMBNAIL

# Below this many files the images are inspected in this process: starting worker processes costs more.
PARALLEL_FROM = 1024
SHARES_PER_WORKER = 4  # each worker's files come in at least this many contiguous shares (a slow one is not the tail)
SHARE_MAX = 256  # files a share at most: an interrupted build waits for at most one share a worker


@dataclass(frozen=True)
class Manifest:
    """The manifest table plus what the folder scan found beside the images."""

    root: Path
    table: pd.DataFrame
    classes: list[str]  # every class folder, empty ones included
    ignored: list[str] = field(default_factory=list)  # hidden files and folders, skipped on purpose
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)  # by path: decodable images' 32 px thumbnails


def scan_dataset(root: Path) -> tuple[list[Entry], list[str], list[str]]:
    """Walk ``root``: entries to inspect, class folder names, and skipped hidden paths.

    The label is the top-level folder; images in nested sub-folders belong to that class. Files in the
    root and symlinks leaving the dataset are entries with a problem, so the report names them.
    """
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    real_root = root.resolve()
    entries: list[Entry] = []
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
                entries.append(Entry(rel, _label_of(rel), "symlinked folder: not followed"))
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
            entries.append(Entry(rel, label, problem))
    return entries, classes, sorted(ignored)


def _label_of(relpath: str) -> str | None:
    parts = relpath.split("/")
    return parts[0] if len(parts) > 1 else None


def build_manifest(
    root: Path,
    max_pixels: int = 50_000_000,
    workers: int = 4,
    max_file_bytes: int = 100_000_000,
    parallel_from: int = PARALLEL_FROM,
) -> Manifest:
    """Scan ``root`` and inspect every file: hash, full decode and thumbnail, each file read once.

    From ``parallel_from`` files on, the work is shared among ``workers`` processes (at most one per core): the
    per-file Python work holds the GIL, so threads were slower than one process. They come from a forkserver
    that has imported only :mod:`~headstart.library.data.inspection`: no fork of a process running Prefect's or
    torch's threads, and no pandas import per worker. Like any multiprocessing code, a script calling this at import
    time of its ``__main__`` needs the ``if __name__ == "__main__":`` guard (console scripts and ``-m`` do not).
    Workers exit by themselves when this process is killed (``inspection.exit_with_parent``).
    """
    entries, classes, ignored = scan_dataset(root)
    processes = min(workers, os.cpu_count() or 1)
    if not entries or len(entries) < parallel_from or processes < 2:
        rows = inspect_many(root, entries, max_pixels, max_file_bytes)
    else:
        rows = _inspect_in_processes(root, entries, max_pixels, max_file_bytes, processes)
    thumbnails = {row["path"]: row.pop("thumbnail") for row in rows if "thumbnail" in row}
    table = pd.DataFrame(rows, columns=COLUMNS)
    return Manifest(root=root, table=table, classes=classes, ignored=ignored, thumbnails=thumbnails)


def _inspect_in_processes(
    root: Path, entries: list[Entry], max_pixels: int, max_file_bytes: int, processes: int
) -> list[dict]:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["headstart.library.data.inspection"])
    size = min(SHARE_MAX, -(-len(entries) // (processes * SHARES_PER_WORKER)))
    shares = [entries[start : start + size] for start in range(0, len(entries), size)]
    pool = ProcessPoolExecutor(processes, context, initializer=exit_with_parent)
    try:
        done = pool.map(
            inspect_many, *zip(*[(root, share, max_pixels, max_file_bytes) for share in shares], strict=True)
        )
        return [row for share in done for row in share]
    finally:  # on an interrupt: the shares not started are dropped, not worked through
        pool.shutdown(wait=True, cancel_futures=True)


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
