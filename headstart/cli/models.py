"""Using a registered model: ``headstart predict`` (class and probability per image) and ``headstart export`` (to
ONNX, checked against torch). Both pull the version and verify it against its manifest first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from headstart.cli.options import ParamsOpt, SetOpt
from headstart.cli.output import text_console
from headstart.cli.registry import VerifyOpt, open_registry_of

console = text_console()


def predict(
    images: Annotated[list[Path], typer.Argument(help="Images, or folders (searched recursively, hidden skipped).")],
    model: Annotated[str, typer.Option("--model", help="'champion' or a version id.")] = "champion",
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    verify: VerifyOpt = False,
) -> None:
    """Class and probability per image, from a registered model (any scenario), pulled and verified first."""
    from headstart.ground.errors import DataError
    from headstart.library.predict import expand_images, predict_images, pull_predictor

    version, predictor = pull_predictor(open_registry_of(params, set_), model, verify=verify)
    found = expand_images(images)
    if not found:
        raise DataError(f"no images in {', '.join(map(str, images))} (folders are searched for image files)")
    for p in predict_images(predictor, found):
        if as_json:
            typer.echo(
                json.dumps(
                    {"image": p.image, "label": p.label, "probability": round(p.probability, 4), "version": version}
                )
            )
        else:
            console.print(Text.assemble(f"{p.image}: ", (p.label, "bold"), f" {p.probability:.3f}"))


def export(
    version: Annotated[str, typer.Argument(help="'champion' or a version id.")],
    dest: Annotated[Path, typer.Argument(help="The .onnx file to write.")],
    fmt: Annotated[str, typer.Option("--format", help="Only onnx for now.")] = "onnx",
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    tolerance: Annotated[float, typer.Option(help="Largest absolute difference from torch accepted.")] = 1e-3,
    verify: VerifyOpt = False,
) -> None:
    """Export the torch part of a registered model to ONNX (dynamic batch); DEST appears only once onnxruntime
    matched torch (exit 1 and nothing written otherwise)."""
    from headstart.ground.errors import ConfigError
    from headstart.library.models.export import export_onnx
    from headstart.library.predict import pull_predictor

    if fmt != "onnx":
        raise ConfigError(f"--format {fmt}: only onnx is supported")
    resolved, predictor = pull_predictor(open_registry_of(params, set_), version, verify=verify)
    report = export_onnx(predictor, dest, tolerance=tolerance)
    extra = "; classifier.skops stays beside it (features scenario)" if predictor.classifier is not None else ""
    console.print(
        f"{resolved} → {report.path}: onnxruntime matches torch to {report.max_abs_diff:.1e} on a batch "
        f"of {report.checked_batch}{extra}"
    )
