"""Epoch checkpoints that a rerun resumes from.

Each epoch's checkpoint (weights, EMA, best epoch's weights, optimizer, scheduler, RNG, history) is written into
its own new folder ``epoch-NNNN-<random>/``, every file fsynced, then published by an atomic pointer swap:
``LATEST`` (a file naming the folder) is replaced by rename. A kill at any moment leaves ``LATEST`` naming the
previous complete checkpoint; a folder it does not name is debris from a killed write, removed by the next save.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from headstart.ground.errors import RunFailed
from headstart.library.storage.backends import fsync_dir

log = logging.getLogger(__name__)
LATEST = "LATEST"
LOCK = ".lock"  # held by the one process writing the checkpoints
FOLDER = re.compile(r"^epoch-\d{4}-[0-9a-f]{8}$")
WEIGHTS, EMA_WEIGHTS, BEST_WEIGHTS, STATE = "model.safetensors", "ema.safetensors", "best.safetensors", "state.pt"


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint: its folder and its state (epoch, best, history, optimizer, scheduler, RNG)."""

    folder: Path
    state: dict

    def tensors(self, name: str) -> dict[str, torch.Tensor] | None:
        """The weights file ``name`` (:data:`WEIGHTS`, :data:`EMA_WEIGHTS`, :data:`BEST_WEIGHTS`), if saved."""
        path = self.folder / name
        return load_file(path) if path.is_file() else None


@contextlib.contextmanager
def exclusive(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s lock while training writes there: a second writer (a retry started while a killed
    run's training process or torchrun rank still lives) would delete the checkpoints the first publishes, so it
    is refused, naming the folder. A POSIX record lock (lockf): it dies with its process, never goes stale, and
    unlike flock is not inherited by forked children (DataLoader workers outliving a killed trainer hold none)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK).open("a") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EAGAIN or EACCES: held by another process
            raise RunFailed(
                f"{directory}: another process is training into these checkpoints (a killed run's training still "
                "running?); stop it or let it finish, then retry"
            ) from None
        yield  # released when the file closes


def latest_folder(directory: Path) -> Path | None:
    """The folder ``LATEST`` names, when it names a well-formed one that exists."""
    try:
        name = (directory / LATEST).read_text().strip()
    except OSError:
        return None
    folder = directory / name
    whole = (folder / STATE).is_file() and (folder / WEIGHTS).is_file()
    return folder if FOLDER.match(name) and whole else None


def load_checkpoint(directory: Path, resume_key: str) -> Checkpoint | None:
    """The published checkpoint when it was made for ``resume_key`` (same params, data, split and code)."""
    folder = latest_folder(directory)
    if folder is None:
        return None
    state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
    if state.get("resume_key") != resume_key:
        log.warning("checkpoint in %s is for other params, data or code; starting afresh", directory)
        return None
    return Checkpoint(folder, state)


def checkpoint_epoch(directory: Path) -> int:
    """The epoch of the published checkpoint (0 while there is none)."""
    folder = latest_folder(directory)
    return int(torch.load(folder / STATE, map_location="cpu", weights_only=True)["epoch"]) if folder else 0


def save_checkpoint(directory: Path, epoch: int, tensors: dict[str, dict[str, torch.Tensor]], state: dict) -> Path:
    """Write epoch ``epoch``'s checkpoint into its own folder, fsync it, then point ``LATEST`` at it; older
    folders (and a killed write's debris) go after. ``tensors`` maps file names to host tensors."""
    directory.mkdir(parents=True, exist_ok=True)
    folder = directory / f"epoch-{epoch:04d}-{uuid.uuid4().hex[:8]}"  # never the name LATEST holds now
    folder.mkdir()
    for name, weights in tensors.items():
        save_file(weights, folder / name)
        _fsync(folder / name)
    torch.save({**state, "epoch": epoch}, folder / STATE)
    _fsync(folder / STATE)
    fsync_dir(folder)
    pointer = directory / f"{LATEST}.tmp"
    pointer.write_text(folder.name)
    _fsync(pointer)
    os.replace(pointer, directory / LATEST)  # the publishing step: before it the previous epoch stands
    fsync_dir(directory)
    for other in directory.iterdir():
        if other.is_dir() and other != folder and FOLDER.match(other.name):
            shutil.rmtree(other, ignore_errors=True)
    return folder


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
