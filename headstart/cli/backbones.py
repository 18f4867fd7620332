"""``headstart backbones``: the presets (family, smallest input, where their weights come from) and ``backbones
verify`` (ImageNet top-5 on photos, to check that weights loaded right)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from headstart.cli.output import text_console

console = text_console()


def list_presets(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per preset.")] = False,
) -> None:
    """List the presets: family, smallest input, and where their weights come from here and with internet."""
    if ctx.invoked_subcommand is not None:
        return
    from headstart.library.models.presets import list_presets

    rows = [
        {
            "name": p.name,
            "family": p.family,
            "min_input_size": p.min_input_size,
            "weights": p.weight_sources(),
            "offline_weights": p.offline_weights(),
            "weights_here": p.weights_here(),
            "weights_with_internet": p.weights_with_internet(),
        }
        for p in list_presets()
    ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table("preset", "family", "min px", "weights here", "with internet: model.weights=hub")
    for row in rows:
        cells = (str(row["min_input_size"]), row["weights_here"], row["weights_with_internet"])
        table.add_row(row["name"], row["family"], *cells)
    console.print(table)
    sources = "package:NAME, file:PATH, s3://BUCKET/KEY, hub, none"
    console.print(f"model.backbone also takes any other timm name; model.weights: {sources}")


def verify(
    name: Annotated[str, typer.Argument(help="timm model name, e.g. tf_efficientnet_lite0.")],
    images: Annotated[list[Path], typer.Argument(help="Photos to classify.")],
    weights: Annotated[str, typer.Option("--weights", help="package:NAME, file:PATH, s3://BUCKET/KEY, hub or none.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
) -> None:
    """ImageNet top-5 (index, label, probability) per image, to check that weights loaded correctly."""
    from headstart.library.models.verify import imagenet_top5

    for image, top5 in zip(images, imagenet_top5(name, weights, images), strict=True):
        if as_json:
            typer.echo(json.dumps({"image": str(image), "top5": [list(t) for t in top5]}))
        else:
            console.print(str(image), style="bold")
            for index, label, prob in top5:
                console.print(f"  {index:4d}  {prob:6.3f}  {label}")
