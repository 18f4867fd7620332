"""One manifest row per file: read (regular files only), hashed and fully decoded, with its 32 px thumbnail.

Kept apart from the manifest's table code so that the worker processes :func:`inspect_many` runs in import only
this (numpy and Pillow), not pandas.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import threading
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from headstart.ground.paths import NotRegularFile, open_regular
from headstart.library.data.images import ImageTooLarge, open_checked, to_rgb
from headstart.library.data.near_duplicates import thumbnail_of

COLUMNS = ["path", "label", "bytes", "sha256", "width", "height", "mode", "decodable", "error"]


@dataclass(frozen=True)
class Entry:
    """A dataset file to inspect: its path under the root, its class, and a problem found while scanning."""

    relpath: str
    label: str | None
    problem: str | None = None


def inspect_file(root: Path, entry: Entry, max_pixels: int, max_file_bytes: int = 100_000_000) -> dict:
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


def inspect_many(root: Path, entries: list[Entry], max_pixels: int, max_file_bytes: int) -> list[dict]:
    """:func:`inspect_file` of each entry, in order (one worker process's share)."""
    return [inspect_file(root, entry, max_pixels, max_file_bytes) for entry in entries]


def exit_with_parent() -> None:
    """Worker-process initializer: exit as soon as the process that started the pool is gone.

    A killed parent (SIGKILL, out of memory, a SIGTERM without a handler) cannot shut its pool down, and a worker's
    own parent is the forkserver: without this, workers blocked on the pool's pipes and the forkserver they keep
    alive outlived it for good. multiprocessing's parent sentinel (the starting process's end of a pipe) becomes
    ready when that process ends, whoever its parent is: no polling, no process id that could be reused.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not a multiprocessing worker
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
