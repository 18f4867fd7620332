"""The feature store: one backbone feature vector per image, content-addressed, with a size cap.

An entry's key is (the image's sha256, the extractor's id), where the extractor id digests everything a vector
depends on besides the pixels: backbone, weights (of the headless network), preprocessing, pooling, stages, the
device type it was computed on, the versions of the libraries that decode, resize and compute (Pillow, OpenCV,
albumentations, NumPy, timm, torch) and :data:`FORMAT` (bumped whenever the project's own decode, transform or
pooling code changes what a vector is). So a new data version extracts only the images the store has not seen, and a
re-score of the champion on an unchanged test set extracts nothing.

Storage is python-diskcache (SQLite, process- and thread-safe, least-recently-used eviction above
``max_bytes``). Values are raw bytes, ``sha256(vector) + float32 vector``; the store refuses to unpickle
anything (a tampered store cannot run code), and a value whose digest does not match is treated as missing.
The store is a cache: deleting its folder at any time loses only time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import diskcache
import numpy as np
import torch

from headstart.library.data.transforms import Preprocessing

log = logging.getLogger(__name__)

FORMAT = 1  # bump when load_rgb_array, build_transform or pooled_features change the vectors they produce
_DIGEST = 32  # bytes of sha256 before each vector
_BATCH = 512  # entries per transaction: other writers wait at most one batch


class _VectorDisk(diskcache.Disk):
    """diskcache's Disk for bytes only: storing anything else is a bug, and reading a pickled row is refused."""

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if type(value) is not bytes:
            raise TypeError(f"the feature store holds bytes, not {type(value).__name__}")
        return super().store(value, read, key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise ValueError("the feature store holds no pickled values; refusing to unpickle one")
        return super().fetch(mode, filename, value, read)


ENGINE = "onnxruntime"  # Extractor.device of features computed by ONNX Runtime on the CPU (onnx_features.py)


@dataclass(frozen=True)
class Extractor:
    """What a feature vector depends on besides the image."""

    backbone: str
    weights_digest: str  # sha256 of the headless network's tensors (models.weights.weights_digest)
    pre: Preprocessing
    pool: str
    stages: int = 0  # 0: the classifier's input; n: the last n stages, pooled (backbones.pooled_features)
    device: str = "cpu"  # what computes them: cpu | cuda (torch) | onnxruntime (kernels differ in the last bits)

    @property
    def id(self) -> str:
        """sha256 of the fields, :data:`FORMAT` and the library versions (a release may decode, resize or compute
        the same layers differently)."""
        versions = _library_versions()
        if self.device == ENGINE:  # only then: torch's ids stay as they were
            import onnxruntime  # loaded already: its session computed the features

            versions["onnxruntime"] = onnxruntime.__version__  # any distribution (onnxruntime-gpu too)
        blob = [FORMAT, self.backbone, self.weights_digest, self.pre.to_dict(), self.pool, self.stages, self.device,
                versions]  # fmt: skip
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        """JSON-friendly form (recorded beside drift references and in metrics)."""
        return {
            "backbone": self.backbone, "weights_digest": self.weights_digest, "preprocessing": self.pre.to_dict(),
            "pool": self.pool, "stages": self.stages,
        }  # fmt: skip


class FeatureStore:
    """Per-image feature vectors in ``directory``, at most ``max_bytes`` on disk (least recently used evicted)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)

    def _open(self) -> diskcache.Cache:
        return diskcache.Cache(
            str(self.directory), size_limit=self.max_bytes, eviction_policy="least-recently-used",
            disk=_VectorDisk, timeout=60, cull_limit=0,  # culled once per write batch, below
        )  # fmt: skip

    def lookup(self, extractor: Extractor, images: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of these image sha256s (missing or damaged ones absent); marks them used. Vectors
        of more than one width for one extractor: a torn or foreign store, none trusted."""
        found: dict[str, np.ndarray] = {}
        damaged = 0
        for sha, vector in self._stored(extractor, list(dict.fromkeys(images))):
            if vector is None:
                damaged += 1
            else:
                found[sha] = vector
        self._report_damaged(damaged, "do not match their checksum")
        widths = {v.shape[0] for v in found.values()}
        if len(widths) > 1:
            log.warning("feature store %s holds vectors of widths %s for one extractor; extracting all",
                        self.directory, sorted(widths))  # fmt: skip
            return {}
        return found

    def read_into(self, extractor: Extractor, images: Sequence[str], out: np.ndarray) -> np.ndarray:
        """Fill row i of ``out`` with the stored vector of ``images[i]`` (an image listed twice fills both rows);
        returns which rows were filled and marks their entries used. An entry that fails its checksum or is not
        ``out.shape[1]`` wide is damaged: its rows stay unfilled (extracted again).

        Each vector goes straight into its row: 60,000 vectors held in a dict beside their stacked copy were one
        feature matrix too many at the peak, and glibc keeps the freed small blocks (benchmarks/scale.py)."""
        rows: dict[str, list[int]] = {}
        for row, sha in enumerate(images):
            rows.setdefault(sha, []).append(row)
        filled = np.zeros(len(images), dtype=bool)
        damaged = 0
        for sha, vector in self._stored(extractor, list(rows)):
            if vector is None or vector.shape != out.shape[1:]:
                damaged += 1
                continue
            out[rows[sha]] = vector
            filled[rows[sha]] = True
        self._report_damaged(damaged, f"do not match their checksum or are not {out.shape[1]} wide")
        return filled

    def _stored(self, extractor: Extractor, wanted: list[str]) -> Iterator[tuple[str, np.ndarray | None]]:
        """(sha, vector) of each stored entry of ``wanted`` (vector None: it fails its checksum). A store that
        cannot be opened (deleted meanwhile, disk full, another version's files) is reported and read as empty
        from there on: it is a cache, the run extracts instead."""
        prefix, read = extractor.id, 0
        try:
            with self._open() as cache:
                for start in range(0, len(wanted), _BATCH):
                    with cache.transact():  # one commit per batch for the access times LRU keeps
                        for sha in wanted[start : start + _BATCH]:
                            value = cache.get(f"{prefix}/{sha}")
                            read += 1
                            if value is not None:
                                yield sha, _decode(value)
        except (OSError, sqlite3.Error, diskcache.Timeout, ValueError) as exc:
            log.warning("feature store %s unreadable (%s); extracting the %d images not read yet", self.directory,
                        exc, len(wanted) - read)  # fmt: skip

    def _report_damaged(self, count: int, problem: str) -> None:
        if count:
            log.warning("feature store %s: %d entries %s; extracting them again", self.directory, count, problem)

    def save(self, extractor: Extractor, vectors: dict[str, np.ndarray]) -> None:
        """Store vectors by image sha256, in batches, then evict least-recently-used entries above the cap.
        A store that cannot be written is reported; the run goes on with the features it has."""
        prefix = extractor.id
        items = list(vectors.items())
        try:
            with self._open() as cache:
                for start in range(0, len(items), _BATCH):
                    with cache.transact():
                        for sha, vector in items[start : start + _BATCH]:
                            cache.set(f"{prefix}/{sha}", _encode(vector))
                cache.cull()
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            log.warning("feature store %s not written (%s); features of this run are not kept", self.directory, exc)

    def volume(self) -> int:
        """Bytes the store occupies (diskcache's estimate: database pages plus value files)."""
        with self._open() as cache:
            return cache.volume()


def _encode(vector: np.ndarray) -> bytes:
    data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
    return hashlib.sha256(data).digest() + data


def _library_versions() -> dict[str, str]:
    import albumentations
    import cv2
    import PIL
    import timm

    return {"albumentations": albumentations.__version__, "cv2": cv2.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "timm": timm.__version__, "torch": torch.__version__}  # fmt: skip


def _decode(value: object) -> np.ndarray | None:
    """The vector, or None when the value is not whole (not bytes, or its digest does not match)."""
    if type(value) is not bytes or len(value) <= _DIGEST or (len(value) - _DIGEST) % 4:
        return None
    digest, data = value[:_DIGEST], value[_DIGEST:]
    if hashlib.sha256(data).digest() != digest:
        return None
    return np.frombuffer(data, dtype=np.float32)
