"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package, written out as class-per-folder PNGs."""

from __future__ import annotations

import fcntl
import gzip
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from headstart.ground.errors import DataError, ToolError

DEBIAN_PACKAGE = "dataset-fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
)  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class ExportedSubset:
    """What one export wrote: the folder and the number of images per class."""

    root: Path
    per_class: dict[str, int]


def locate_idx_dir(cache: Path) -> Path:
    """Return the folder holding the IDX files: the installed package, else a cached extract.

    When neither exists, ``apt-get download`` fetches the .deb into ``cache`` and ``dpkg -x`` unpacks it
    there (no root, nothing installed system-wide).
    """
    if (SYSTEM_DIR / _FILES["train"][0]).is_file():
        return SYSTEM_DIR
    extracted = cache / "extract" / "usr/share/datasets/fashion-mnist"
    if (extracted / _FILES["test"][1]).is_file():
        return extracted
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise ToolError(
                f"{tool} not found: install Debian's {DEBIAN_PACKAGE} package, or copy its IDX files into {extracted}"
            )
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes at once (parallel tests, two imports): one fetches
        if (extracted / _FILES["test"][1]).is_file():
            return extracted  # the other one fetched it while this one waited
        return _fetch_and_extract(cache, extracted)


def _fetch_and_extract(cache: Path, extracted: Path) -> Path:
    for deb in cache.glob("*.deb"):
        deb.unlink()
    _run(["apt-get", "download", DEBIAN_PACKAGE], cwd=cache)
    debs = sorted(cache.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        raise ToolError(f"apt-get download {DEBIAN_PACKAGE} produced no .deb in {cache}")
    staging = cache / "extract.partial"
    shutil.rmtree(staging, ignore_errors=True)
    _run(["dpkg", "-x", str(debs[-1]), str(staging)], cwd=cache)
    shutil.rmtree(cache / "extract", ignore_errors=True)
    staging.rename(cache / "extract")  # atomic: a half-extracted package is never picked up
    return extracted


def _run(cmd: list[str], cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ToolError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")


def read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({body.size} bytes for shape {dims})")
    return body.reshape(dims)


def choose_indices(labels: np.ndarray, per_class: int, seed: int) -> dict[int, np.ndarray]:
    """Pick ``per_class`` indices of each label from a seeded permutation.

    The permutation depends only on the seed, so a larger ``per_class`` is a superset of a smaller one:
    importing again with more images adds to the data without replacing it.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = {}
    for label in range(len(CLASS_NAMES)):
        of_label = order[labels[order] == label]
        if per_class > len(of_label):
            raise DataError(f"{per_class} images per class: only {len(of_label)} images of class {label} exist")
        chosen[label] = np.sort(of_label[:per_class])
    return chosen


def export_split(idx_dir: Path, split: str, per_class: int, seed: int, dest: Path) -> ExportedSubset:
    """Write ``per_class`` images of each class from ``split`` (train|test) as ``dest/<class>/<split>-<i>.png``.

    ``dest`` is replaced as a whole, so the folder holds exactly this subset.
    """
    images_file, labels_file = _FILES[split]
    images, labels = read_idx(idx_dir / images_file), read_idx(idx_dir / labels_file)
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    counts = {}
    for label, indices in choose_indices(labels, per_class, seed).items():
        class_dir = staging / CLASS_NAMES[label]
        class_dir.mkdir(parents=True)
        for index in indices:
            Image.fromarray(images[index]).save(class_dir / f"{split}-{index:05d}.png")
        counts[CLASS_NAMES[label]] = len(indices)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return ExportedSubset(root=dest, per_class=counts)
