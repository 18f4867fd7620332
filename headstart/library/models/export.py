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
    try:
        import onnxruntime
    except ImportError:
        raise ToolError("ONNX export needs onnx, onnxscript and onnxruntime: `make install` adds them") from None
    size = predictor.config.pre.input_size
    network = predictor.network.eval()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.partial-") as staging:
        staged = Path(staging) / dest.name
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(
            network,
            (torch.randn(2, 3, size, size),),
            str(staged),
            input_names=["images"],
            output_names=["outputs"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=opset,
            dynamo=True,
        )
        check = torch.randn(5, 3, size, size)
        with torch.inference_mode():
            expected = network(check).numpy()
        session = onnxruntime.InferenceSession(str(staged), providers=["CPUExecutionProvider"])
        diff = float(np.abs(session.run(None, {"images": check.numpy()})[0] - expected).max())
        if not diff <= tolerance:
            raise ExportMismatch(
                f"{dest}: ONNX output differs from torch by {diff:.2e} (tolerance {tolerance:g}); nothing written"
            )
        # only a checked export becomes visible: its external weights file (``<name>.data``) first, the model last
        for part in sorted(Path(staging).iterdir(), key=lambda p: p == staged):
            os.replace(part, dest.parent / part.name)
    return ExportReport(dest, diff, len(check))
