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
    network: torch.nn.Module, size: int, opset: int = 18, output: str = "outputs"
) -> tuple[torch.onnx.ONNXProgram, float, np.ndarray]:
    """``network`` exported by torch's dynamo exporter with a dynamic batch (input ``images``), and how far
    onnxruntime's output is from torch's on a seeded batch of another size than the export's: (program, largest
    absolute difference, torch's output on that batch). The caller judges the difference."""
    import onnxruntime

    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.zeros(2, 3, size, size),)  # zeros: an export draws nothing from the caller's random state
    program = torch.onnx.export(
        network, example, None, input_names=["images"], output_names=[output],
        dynamic_shapes=({0: batch},),  # by position: the forward's argument may be named anything
        opset_version=opset, dynamo=True, verbose=False,
    )  # fmt: skip
    check = torch.randn(5, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = network(check).numpy()
    session = onnxruntime.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (found,) = session.run(None, {"images": check.numpy()})
    return program, float(np.abs(found - expected).max()), expected
