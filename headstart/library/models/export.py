"""Exporting the torch part of a saved model to ONNX, checked against torch on a batch of another size."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headstart.ground.errors import ExportMismatch, ToolError
from headstart.library.models.saved_model import Predictor


@dataclass(frozen=True)
class ExportReport:
    """Where the ONNX file went and how closely onnxruntime matches torch."""

    path: Path
    max_abs_diff: float
    checked_batch: int


def export_onnx(predictor: Predictor, dest: Path, opset: int = 18, tolerance: float = 1e-3) -> ExportReport:
    """Export with a dynamic batch dimension, run onnxruntime on a batch of a different size and compare; only a
    file that matched torch within ``tolerance`` is moved to ``dest`` (atomically): on a mismatch nothing is left
    there and an existing ``dest`` is untouched.

    For the ``features`` scenario the torch part is the feature extractor; its ``classifier.skops`` stays beside.
    """
    from importlib.util import find_spec

    if any(find_spec(name) is None for name in ("onnx", "onnxscript", "onnxruntime")):
        raise ToolError("ONNX export needs onnx, onnxscript and onnxruntime: `make install` adds them")
    size = predictor.config.pre.input_size
    network = predictor.network.eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.partial-") as staging:
        staged = Path(staging) / dest.name
        program, diff, expected = export_checked(network, size, opset, "outputs")
        program.save(str(staged))
        if not diff <= tolerance:
            raise ExportMismatch(
                f"{dest}: ONNX output differs from torch by {diff:.2e} (tolerance {tolerance:g}); nothing written"
            )
        # only a checked export becomes visible: its external weights file (``<name>.data``) first, the model last
        for part in sorted(Path(staging).iterdir(), key=lambda p: p == staged):
            os.replace(part, dest.parent / part.name)
    return ExportReport(dest, diff, len(expected))


def export_checked(
    network: torch.nn.Module, size: int, opset: int = 18, output: str = "outputs", pixels: bool = False
) -> tuple[torch.onnx.ONNXProgram, float, np.ndarray]:
    """``network`` exported by torch's dynamo exporter with a dynamic batch (input ``images``: float (N, 3, size,
    size), or with ``pixels`` uint8 (N, size, size, 3)), and how far onnxruntime's output is from torch's on a
    seeded batch of another size than the export's: (program, largest absolute difference, torch's output on that
    batch). The caller judges the difference."""
    import onnxruntime

    batch = torch.export.Dim("batch", min=1, max=4096)
    shape = (size, size, 3) if pixels else (3, size, size)
    dtype = torch.uint8 if pixels else torch.float32
    example = (torch.zeros(2, *shape, dtype=dtype),)  # zeros: an export draws nothing from the caller's random state
    program = torch.onnx.export(
        network, example, None, input_names=["images"], output_names=[output],
        dynamic_shapes=({0: batch},),  # by position: the forward's argument may be named anything
        opset_version=opset, dynamo=True, verbose=False,
    )  # fmt: skip
    seeded = torch.Generator().manual_seed(0)
    if pixels:
        check = torch.randint(0, 256, (5, *shape), dtype=dtype, generator=seeded)
    else:
        check = torch.randn(5, *shape, generator=seeded)
    with torch.inference_mode():
        expected = network(check).numpy()
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (found,) = session.run(None, {"images": check.numpy()})
    return program, float(np.abs(found - expected).max()), expected
