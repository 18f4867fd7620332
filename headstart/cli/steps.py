"""``headstart step NAME``: one step of the pipeline table, as dvc.yaml's stages call it.

Upstream results are read back from the run folder (``--out``); the step writes its own outputs there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from headstart.cli.output import print_decision, text_console
from headstart.cli.progress import progress_bars

console = text_console()


def _describe(name: str, result: Any) -> None:
    """One line (or the decision table) per step, for the terminal."""
    if name == "validate":
        reports = [r for r in (result.data, result.test) if r is not None]
        for report in reports:
            state = "PASSED" if report.success else "FAILED"
            console.print(f"{report.root}: {state} — {report.valid_images}/{report.images} images usable")
    elif name == "gate":
        print_decision(result.to_dict())
    elif name == "split":
        console.print(f"split: {result.counts()}")
    elif name == "train":
        console.print(f"{result.model_dir}: {result.history[-1] if result.history else 'trained'}")
    elif name == "evaluate":
        console.print(f"accuracy {result.metrics['accuracy']:.4f}, macro-F1 {result.metrics['macro_f1']:.4f}")
    elif name == "register":
        console.print(f"registered version {result}")
    elif name == "promote":
        console.print(f"champion #{result.seq}: {result.version}" if result else "not promoted")
    elif name == "report":
        console.print(f"summary and {len(result.dashboards)} dashboards written")


def step(
    name: Annotated[
        str, typer.Argument(help="A step of the pipeline table (tasks/pipeline.py); a wrong name lists them.")
    ],
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="The run folder: inputs read from it, outputs written to it.")] = Path(
        "runs/dvc"
    ),
    allow_class_change: Annotated[bool, typer.Option(help="gate: allow a different class set.")] = False,
) -> None:
    """Run one pipeline step outside Prefect (what `dvc repro` calls); upstream results come from OUT."""
    from headstart.ground.environment import PROJECT_LOGGERS
    from headstart.ground.params import load_params
    from headstart.ground.run_folder import RunFolder
    from headstart.library.training.world import FLOW_RUN_ENV
    from headstart.library.training.world import current as current_world
    from tasks.pipeline import get_step, steps_by_name
    from tasks.step import StepContext

    # Steps run outside Prefect here: their progress (epochs, resume, freezing) goes to stderr; under torchrun
    # only rank 0 reports (the other ranks say only what goes wrong).
    rank = current_world().rank
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s")
    for logger in PROJECT_LOGGERS:
        logging.getLogger(logger).setLevel(level)
    try:
        chosen = get_step(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from None
    if not chosen.in_dvc:
        raise typer.BadParameter(f"{name} runs only inside the Prefect flow (headstart run)", param_hint="NAME")
    ctx = StepContext(
        load_params(params),
        RunFolder(out),
        steps_by_name(),
        flow_run_id=os.environ.get(FLOW_RUN_ENV) or None,  # set when a flow's train step launched torchrun
        allow_class_change=allow_class_change,
    )
    ctx.run.root.mkdir(parents=True, exist_ok=True)
    with progress_bars():
        result = chosen.run(ctx)
    if rank == 0:
        _describe(name, result)
    if chosen.check is not None:
        chosen.check(ctx, result)  # e.g. ValidationFailed: exit 1 with the failures named
