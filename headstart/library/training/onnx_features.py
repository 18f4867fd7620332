"""Frozen-backbone features on the CPU through ONNX Runtime.

On these 2 cores ONNX Runtime ran tf_efficientnet_lite0 at 224 px 3-6.6x faster than torch's channels_last
forward of the same batch (docs/benchmarks.md, P10), with features within 1e-5 of torch's. Each extractor is
exported once per machine (torch's dynamo exporter, ~10 s) into the user cache, keyed by the extractor's id, and
checked against torch on a probe batch before it is kept; a network that does not export, or whose export does
not match, is remembered as such and extracted by torch. The store keys ONNX Runtime's features apart from
torch's (``Extractor.device``), as it does GPU and CPU features: a vector never changes engines silently.

The engine is a property of the machine, not of the model: ``HEADSTART_FEATURE_ENGINE=torch`` keeps torch (the
test suite does, so that its many tiny extractors do not each pay an export).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from headstart.ground.errors import ConfigError
from headstart.ground.paths import cache_dir
from headstart.library.models.backbones import pooled_features
from headstart.library.models.export import export_checked
from headstart.library.training.feature_store import ENGINE, Extractor

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

log = logging.getLogger(__name__)

ENGINE_VARIABLE = "HEADSTART_FEATURE_ENGINE"  # auto (ONNX Runtime where it works) | torch
TOLERANCE = 1e-4  # largest difference from torch, relative to the features' largest magnitude (seen: ~2e-6)
EXPORT_FORMAT = 2  # in the export's file name; 2: uint8 pixels in, normalised in the graph (1: float images)
_sessions: dict[tuple[str, int], InferenceSession | None] = {}  # per process: one load per extractor


class _Features(nn.Module):
    """:func:`pooled_features` of resized uint8 pixels (N, H, W, 3), normalised inside as the eval transform
    normalises (the same float32 arithmetic: features bit-equal to a float input's, measured). In the graph this
    is one vectorised pass over the batch where albumentations spent ~0.35 ms an image at 224 px, and the batch
    is stacked and handed over at a quarter of the bytes: the pipeline went from 0.88-0.92 of ONNX Runtime's bare
    forward to 0.98 (docs/benchmarks.md, P10)."""

    def __init__(self, model: nn.Module, extractor: Extractor) -> None:
        super().__init__()
        self.model, self.stages, self.pool = model, extractor.stages, extractor.pool
        pre = extractor.pre
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("scale", 1 / (torch.tensor(pre.std).view(1, 3, 1, 1) * 255))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        images = (pixels.permute(0, 3, 1, 2).float() - self.mean) * self.scale
        return pooled_features(self.model, images, self.stages, self.pool)


def cpu_session(model: nn.Module, extractor: Extractor) -> InferenceSession | None:
    """An ONNX Runtime session computing ``extractor``'s features with torch's thread count, or None where it
    cannot (onnxruntime missing, the network does not export or does not match torch): torch extracts then."""
    chosen = os.environ.get(ENGINE_VARIABLE, "auto")
    if chosen not in ("auto", "torch"):
        raise ConfigError(f"{ENGINE_VARIABLE}={chosen!r}: expected auto or torch")
    if chosen == "torch":
        return None
    try:
        import onnxruntime
    except ImportError:
        return None
    key = _session_key(extractor)
    if key not in _sessions:
        path = _exported(model, extractor, cache_dir() / "onnx-features" / f"{key[0]}.v{EXPORT_FORMAT}.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        session = None
        try:
            if path is not None:
                session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged cache file: torch extracts; deleting the file makes a new export
            log.warning("%s: not loadable (%s); extracting with torch", path, exc)
        _sessions[key] = session
    return _sessions[key]


class EngineFailed(RuntimeError):
    """ONNX Runtime could not run a batch (out of memory, a damaged or foreign export): torch extracts instead."""


def run_session(session: InferenceSession, pixels: torch.Tensor) -> torch.Tensor:
    """One batch of resized uint8 pixels (N, H, W, 3) through the session; :class:`EngineFailed` when ONNX
    Runtime fails."""
    try:
        (features,) = session.run(None, {"images": pixels.numpy()})
    except Exception as exc:  # ONNX Runtime's own exception types live in its compiled module
        raise EngineFailed(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
    return torch.from_numpy(features)


def _exported(model: nn.Module, extractor: Extractor, path: Path) -> Path | None:
    """The checked export at ``path`` (made now if missing), or None when this network cannot be used (also
    remembered, beside it, so the next run does not try again)."""
    refused = path.with_suffix(".refused")
    if path.exists():
        return path
    if refused.exists():
        return None
    with _one_exporter(path):  # sweep trials on one machine: one exports, the others wait and load its file
        if path.exists():
            return path
        if refused.exists():
            return None
        try:
            data = _export_checked(model.eval(), extractor)
        except Exception as exc:
            if _shortage(exc):  # this moment's, not the network's: tried again next run
                log.warning("%s: ONNX export failed (%s); extracting with torch", extractor.backbone, exc)
                return None
            # the exporter cannot, or its result differs from torch: remembered
            log.warning("%s: ONNX export not usable (%s); extracting with torch (delete %s to try again)",
                        extractor.backbone, exc, refused)  # fmt: skip
            _write_quietly(refused, f"{exc}\n".encode())
            return None
        return path if _write_quietly(path, data) else None


def _shortage(exc: BaseException) -> bool:
    """A failure of memory or disk, not of the network: torch's allocator raises a RuntimeError ("can't allocate
    memory"), CUDA's an OutOfMemoryError, the OS a MemoryError or OSError."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError | OSError) or "allocate" in text or "out of memory" in text


def forget_session(extractor: Extractor) -> None:
    """Drop this process's session for ``extractor`` (one that failed at run time): later extractions in the
    process use torch at once instead of failing again first."""
    _sessions[_session_key(extractor)] = None


def _session_key(extractor: Extractor) -> tuple[str, int]:
    """(the id of ONNX Runtime's features for ``extractor``: its export's name, torch's thread count)."""
    return Extractor(**{**extractor.__dict__, "device": ENGINE}).id, torch.get_num_threads()


@contextmanager
def _one_exporter(path: Path) -> Iterator[None]:
    """Hold the export's file lock (filelock, as torch and huggingface_hub use) while exporting; where the lock
    cannot be taken (an unwritable cache, a 5-minute wait) export without it: the file is written atomically."""
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{path}.lock", timeout=300)
        lock.acquire()
    except (OSError, Timeout) as exc:
        log.debug("export lock %s.lock not taken (%s)", path, exc)
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _write_quietly(path: Path, data: bytes) -> bool:
    """``data`` at ``path``, whole or not at all (a killed write leaves no file to load); False when the cache
    cannot be written (read-only, full): the export is then used by no one, and torch extracts."""
    staged = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as staged:
            staged.write(data)
        os.replace(staged.name, path)
    except OSError as exc:
        log.warning("ONNX export cache %s not writable (%s): extracting with torch", path.parent, exc)
        if staged is not None:
            Path(staged.name).unlink(missing_ok=True)  # a full disk leaves no partial file behind
        return False
    return True


def _export_checked(model: nn.Module, extractor: Extractor) -> bytes:
    """The ONNX model of ``extractor``'s features, dynamic in the batch, checked against torch."""
    network = _Features(model, extractor).eval()
    program, difference, expected = export_checked(network, extractor.pre.input_size, output="features", pixels=True)
    relative = difference / max(float(np.abs(expected).max()), 1e-12)  # features have no fixed scale
    if not relative <= TOLERANCE:
        raise ValueError(f"differs from torch by {relative:.1e} of the largest feature (tolerance {TOLERANCE:g})")
    return program.model_proto.SerializeToString()
