"""``headstart report``: the overview across retrains as a static HTML page, from the registry alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from headstart.cli.options import ParamsOpt, SetOpt, settings
from headstart.cli.output import text_console

console = text_console()


def report(
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html and overview.json (created).")] = Path(
        "report"
    ),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Write the ``<model>-overview`` page as self-contained HTML (charts inline) plus its data as JSON. Needs only
    the registry: outside a workspace, name it with ``--set registry.uri=s3://BUCKET/PREFIX --set
    registry.model_name=NAME``."""
    from headstart.library.registry.registry import open_registry
    from headstart.library.reports.overview import gather_overview, overview_html, overview_markdown

    chosen = settings(params, set_)
    overview = gather_overview(open_registry(chosen.registry), chosen.gate.primary_metric)
    page = overview_html(overview_markdown(overview), f"{overview.model}: overview")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("index.html", page), ("overview.json", json.dumps(overview.to_dict(), indent=2))):
        partial = out / f".{name}.{os.getpid()}.partial"  # two reports at once never share a partial file
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out / name)  # a reader sees the old page or the new one, never half
    console.print(f"{len(overview.versions)} versions, champion {overview.champion}: {out / 'index.html'}")
