"""Pipeline commands: ``headstart run`` (the retrain flow), ``sweep`` (trials on Dask), ``step NAME`` (one step, as
``dvc repro`` calls it; upstream results read back from the run folder) and ``reproduce VERSION`` (rebuild a
registered version from its record and compare)."""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from headstart.cli.options import AllowClassChangeOpt, ParamsOpt, SetOpt, settings
from headstart.cli.output import print_decision, text_console
from headstart.cli.progress import progress_bars
from headstart.ground.errors import ConfigError, ExportMismatch, RunFailed

console = text_console()


def run(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (sets data.dir).")] = None,
    test_data: Annotated[Path | None, typer.Option(help="Fixed evaluation set (sets data.test_dir).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    run_dir: Annotated[Path | None, typer.Option(help="Output folder (default runs/<time>-<id>).")] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the run summary here.")] = None,
    allow_class_change: AllowClassChangeOpt = False,
) -> None:
    """Run the retrain flow: the pipeline table's steps (validate → split → health → train → evaluate → gate →
    register → report → promote → publish)."""
    from prefect import tags

    from flows.notifications import model_tag
    from flows.retrain import load_run_params, retrain
    from flows.temporary_api import share_temporary_api
    from headstart.cli.interrupts import sigterm_as_ctrl_c
    from headstart.cli.progress import progress_bars

    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.dir={json.dumps(str(data))}")  # quoted: a folder named 2024 or yes is a name
        overrides += _model_named_after(data, params, overrides)
    if test_data is not None:
        overrides.append(f"data.test_dir={json.dumps(str(test_data))}")
    # what the flow checks first, checked before a Prefect server starts: refused here (exit 2), not a failed run
    checked = load_run_params(str(params), overrides, str(run_dir) if run_dir else None)
    sigterm_as_ctrl_c()  # a stopped run stops its temporary Prefect server and torchrun ranks too
    share_temporary_api()
    # the run carries its model's tag from its creation: a failure notifies this model's receiver only
    with progress_bars(), tags(model_tag(checked.registry.model_name)):
        state = retrain(
            params_path=str(params),
            overrides=overrides,
            run_dir=str(run_dir) if run_dir else None,
            allow_class_change=allow_class_change,
            return_state=True,
        )
    if state.is_failed():
        raise RunFailed(f"retrain run failed: {state.message}")
    _print_summary(state.result(), summary_json)


def _model_named_after(data: Path, params: Path, overrides: list[str]) -> list[str]:
    """When ``--data`` names another dataset and the model name is still the shipped default, the model is named
    after the dataset (said on the first line), so an own dataset is never registered as fashion-mnist."""
    from pydantic import ValidationError

    from headstart.ground.errors import ConfigError
    from headstart.ground.params import RegistryParams

    shipped = RegistryParams().model_name
    chosen = settings(params, overrides).registry.model_name
    if chosen != shipped or data.name == shipped or any(o.startswith("registry.model_name=") for o in overrides):
        return []
    try:
        RegistryParams(model_name=data.name)
    except ValidationError:
        raise ConfigError(
            f"--data {data}: {data.name!r} cannot name the model in the registry; name it: "
            "`headstart run --data DIR --set registry.model_name=NAME`"
        ) from None
    console.print(f"registry.model_name: {data.name} (the dataset's name; --set registry.model_name=NAME to choose)")
    return [f"registry.model_name={json.dumps(data.name)}"]  # quoted: a dataset named 0001 or true is a name


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="SWEEP.yaml: `grid` (key: [values]) and/or `trials` (a list).")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    cluster: Annotated[
        str, typer.Option(help="local:N (a Dask LocalCluster of N worker processes) or tcp://HOST:8786.")
    ] = "local:2",
    run_dir: Annotated[Path | None, typer.Option(help="The sweep's folder (default runs/<time>-<id>).")] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the chosen run's summary here.")] = None,
    allow_class_change: AllowClassChangeOpt = False,
    max_trials: Annotated[int, typer.Option(min=1, help="Refuse a sweep of more trials than this.")] = 256,
) -> None:
    """Train every trial of SWEEP_FILE on a Dask cluster, each scored on the validation split; the best goes
    through evaluate → gate → register → promote like any run. `--set` applies to every trial."""
    from prefect import tags

    from flows.notifications import model_tag
    from flows.retrain import load_run_params
    from flows.sweep import sweep as sweep_flow
    from flows.sweep import task_runner
    from flows.temporary_api import share_temporary_api
    from headstart.cli.interrupts import sigterm_as_ctrl_c

    try:  # read here: a file the user names may be anywhere; the flow records its text and digest
        sweep_text = sweep_file.read_text()
    except OSError as exc:
        raise ConfigError(f"{sweep_file}: cannot read the sweep file ({exc.strerror})") from None
    runner = task_runner(cluster)  # a wrong --cluster is named here
    checked = load_run_params(str(params), list(set_ or []), str(run_dir) if run_dir else None)  # before a server
    sigterm_as_ctrl_c()  # a stopped sweep stops its temporary Prefect server and Dask workers too
    share_temporary_api()  # one for the Dask workers too, which would each start their own
    with tags(model_tag(checked.registry.model_name)):  # its failure notifies this model's receiver only
        state = sweep_flow.with_options(task_runner=runner)(
            sweep_path=str(sweep_file),
            sweep_text=sweep_text,
            params_path=str(params),
            overrides=list(set_ or []),
            run_dir=str(run_dir) if run_dir else None,
            cluster=cluster,
            allow_class_change=allow_class_change,
            max_trials=max_trials,
            return_state=True,
        )
    if state.is_failed():
        raise RunFailed(f"sweep failed: {state.message}")
    summary = state.result()
    table = Table("trial", "overrides", "val accuracy", "val macro-F1", "seconds", "attempts", title="sweep")
    for row in summary["sweep"]["trials"]:
        chosen = row["trial"] == summary["sweep"]["chosen"]
        scores = [f"{row[k]:.4f}" if k in row else "failed" for k in ("val_accuracy", "val_macro_f1")]
        overrides = ", ".join(f"{k}={v}" for k, v in row["overrides"].items())
        cells = (row["trial"] + (" (chosen)" if chosen else ""), overrides, *scores)
        table.add_row(*cells, str(row.get("seconds", "")), str(row.get("attempts", "")))
    console.print(table)
    _print_summary(summary, summary_json)


def _print_summary(summary: dict, summary_json: Path | None) -> None:
    """A finished run's test figures, decision and registration, for the terminal (and as JSON)."""
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary, indent=2))
    m = summary["metrics"]
    console.print(Text.assemble((f"test accuracy {m['accuracy']:.3f}", "bold"),
                                f", macro-F1 {m['macro_f1']:.3f} on {m['test_images']} images ({summary['scenario']}, "
                                f"{summary['backbone']}, data md5 {summary['data_md5']})"))  # fmt: skip
    console.print(f"run folder: {summary['run_dir']}  (model: {summary['model_dir']})")
    print_decision(summary["decision"])
    promoted = summary["promoted"]
    outcome = ("promoted to champion", "green") if promoted else f"not promoted; champion stays {summary['champion']}"
    console.print(Text.assemble(f"registered {summary['registry']} version {summary['version']}: ", outcome))


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


class NotReproduced(ExportMismatch):
    """The rebuild differs from the record (exit status 1, like any other failed check)."""


def reproduce(
    ref: Annotated[str, typer.Argument(metavar="VERSION", help="A version id, or 'champion'.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Scratch folder to rebuild in (new or empty); default runs/reproduce-<time>-<6 hex>."),
    ] = None,
    remote: Annotated[
        str | None, typer.Option(help="DVC remote holding the data versions; default: the workspace's.")
    ] = None,
    allow_code_change: Annotated[
        bool, typer.Option(help="Rebuild even though the installed code differs (compared within the tolerance).")
    ] = False,
    tolerance: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Largest metric difference accepted in another environment.")
    ] = 0.02,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Train with this many torch threads (another environment).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Rebuild VERSION from the registry's record (its data versions, params, code and environment) in a scratch
    folder, compare weights or metrics, and record the outcome beside the version. Only the registry is read from
    the workspace's params (--params/--set); its data and params are never used. Exit 1 when not reproduced."""
    from flows.reproduce import reproduce as rebuild_and_compare
    from headstart.library.evaluation.reproduction import NOT_REPRODUCED, verdict_line
    from headstart.library.registry.registry import open_registry

    registry = open_registry(settings(params, set_).registry)
    scratch = out or Path("runs") / f"reproduce-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    outcome = rebuild_and_compare(registry, ref, scratch, _remote(remote), allow_code_change, tolerance, threads)
    if as_json:
        typer.echo(json.dumps(outcome, indent=2))
    else:
        console.print(f"{registry.model}/{outcome['version']}: {verdict_line(outcome)}")
        console.print(
            f"details: {outcome['scratch']}/reproduction.json; recorded in the registry as {outcome['registry_record']}"
        )
    if outcome["verdict"] == NOT_REPRODUCED:
        raise NotReproduced(f"{registry.model}/{outcome['version']}: {verdict_line(outcome)}")


def _remote(given: str | None) -> str:
    """The DVC remote to pull from: ``--remote``, else the workspace's, else ``$HEADSTART_DVC_REMOTE`` or the local
    default (where ``headstart data import`` pushes when none is configured)."""
    from headstart.ground.errors import DataError
    from headstart.ground.paths import default_dvc_remote
    from headstart.library.data.versioning import REMOTE_ENV, check_remote_url, configured_remote, find_repo_root

    if given:
        return check_remote_url(given)
    try:
        configured = configured_remote(find_repo_root(Path.cwd()))
    except DataError:  # outside a workspace: the registry and a remote are all reproduce needs
        configured = None
    return configured or os.environ.get(REMOTE_ENV) or str(default_dvc_remote())
