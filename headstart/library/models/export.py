"""Exporting the torch part of a saved model to ONNX, checked against torch on a batch of another size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from headstart.ground.errors import ToolError
from headstart.library.models.saved_model import Predictor


@dataclass(frozen=True)
class ExportReport:
    """Where the ONNX file went and how closely onnxruntime matches torch."""

    path: Path
    max_abs_diff: float
    checked_batch: int


def export_onnx(predictor: Predictor, dest: Path, opset: int = 18) -> ExportReport:
    """Export with a dynamic batch dimension, then run onnxruntime on a batch of a different size and compare.

    For the ``features`` scenario the torch part is the feature extractor; its ``classifier.skops`` stays beside.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ToolError("ONNX export needs onnx, onnxscript and onnxruntime: `make install` adds them") from None
    size = predictor.config.pre.input_size
    network = predictor.network.eval()
    example = torch.randn(2, 3, size, size)
    dest.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(
        network,
        (example,),
        str(dest),
        input_names=["images"],
        output_names=["outputs"],
        dynamic_shapes={"x": {0: batch}},
        opset_version=opset,
        dynamo=True,
    )
    check = torch.randn(5, 3, size, size)
    with torch.inference_mode():
        expected = network(check).numpy()
    session = onnxruntime.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    actual = session.run(None, {"images": check.numpy()})[0]
    diff = float(np.abs(actual - expected).max())
    if diff > 1e-3:
        raise ToolError(f"{dest}: ONNX output differs from torch by {diff:.2e}; the export is not faithful")
    return ExportReport(dest, diff, len(check))
