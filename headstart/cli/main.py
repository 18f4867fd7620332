"""The ``headstart`` command line: thin typer commands over the steps in ``tasks/`` and the flows."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from headstart.cli import data_remote
from headstart.cli import registry as cli_registry
from headstart.cli.options import AllowClassChangeOpt, ParamsOpt, SetOpt, settings
from headstart.cli.output import print_decision, print_report, text_console
from headstart.cli.registry import registry_app
from headstart.cli.report import report
from headstart.cli.reproduce import reproduce
from headstart.cli.steps import step
from headstart.ground.environment import apply_quiet_environment, log_project_at_info
from headstart.ground.errors import ConfigError, ExportMismatch, HeadstartError, RunFailed, ValidationFailed

app = typer.Typer(help="Keep image classifiers fresh by transfer learning.", no_args_is_help=True)
data_app = typer.Typer(help="Datasets under DVC.", no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset into data/<name>/ and track it with DVC.", no_args_is_help=True)
backbones_app = typer.Typer(help="Backbone presets and their pretrained weights.", invoke_without_command=True)
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")
data_app.command("remote")(data_remote.remote)
data_app.command("pull")(data_remote.pull)
app.command("step")(step)
app.add_typer(backbones_app, name="backbones")
app.add_typer(registry_app, name="registry")
app.command("predict")(cli_registry.predict)
app.command("export")(cli_registry.export)
app.command("report")(report)
app.command("reproduce")(reproduce)
console = text_console()
err_console = text_console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"headstart {version('headstart')}")
        raise typer.Exit()


@app.callback()
def _setup(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    apply_quiet_environment()  # before albumentations, Prefect and DVC are imported
    _use_workspace_api_auth()
    # Step progress (epochs, freezing) reaches the terminal and, through Prefect's extra loggers, the UI.
    log_project_at_info()


def _use_workspace_api_auth() -> None:
    """Inside a workspace whose ``headstart serve`` generated an API auth string, send it (unless one is set):
    read before Prefect is imported, which reads its settings once."""
    from flows.services import AUTH_ENV, is_loopback, workspace_auth_string

    if os.environ.get(AUTH_ENV) or not is_loopback(os.environ.get("PREFECT_API_URL", "")):
        return  # one is set already, or the API is elsewhere: the workspace's secret stays here
    if auth := workspace_auth_string(Path.cwd()):
        os.environ[AUTH_ENV] = auth


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Workspace folder (created if missing).")],
    params_template: Annotated[Path | None, typer.Option(help="params.yaml to start from.")] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            help="DVC remote: s3://BUCKET/PATH (endpoint and keys from the AWS_* environment) or a local folder; "
            "replaces an existing workspace's remote."
        ),
    ] = None,
) -> None:
    """Create (or complete) a workspace: a git + DVC repository with params.yaml, dvc.yaml (the pipeline, for
    `dvc repro`) and a default DVC remote, kept in .dvc/config.local (never committed)."""
    from headstart.library.data.versioning import check_remote_url, ensure_default_remote

    remote = check_remote_url(remote) if remote is not None else None  # fails before anything is made (or imported)
    from tasks.dvc_stages import init_pipeline_workspace

    root = init_pipeline_workspace(directory, params_template, remote)
    described = data_remote.describe_remote(ensure_default_remote(root))
    console.print(f"workspace {root}: git + DVC, params.yaml, dvc.yaml, {described}")


@import_app.command("fashion-mnist")
def import_fashion_mnist(
    per_class: Annotated[int, typer.Option(min=1, help="Training-pool images per class.")] = 100,
    test_per_class: Annotated[int, typer.Option(min=0, help="Fixed evaluation images per class (0: none).")] = 0,
    name: Annotated[str, typer.Option(help="Dataset name: data/<name>/.")] = "fashion-mnist",
    seed: Annotated[int, typer.Option(help="Which images are drawn; a larger N keeps the smaller N's.")] = 0,
    data_root: Annotated[Path, typer.Option(help="Folder holding datasets.")] = Path("data"),
) -> None:
    """Fashion-MNIST from Debian's dataset-fashion-mnist package, as PNGs under DVC."""
    from headstart.ground.paths import cache_dir
    from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
    from headstart.library.data.folder_import import check_dataset_name
    from headstart.library.data.versioning import track_and_push

    idx_dir = locate_idx_dir(cache_dir() / "debs")
    jobs = [("train", per_class, data_root / check_dataset_name(name))]
    if test_per_class:
        jobs.append(("test", test_per_class, data_root / f"{name}-test"))
    for split, count, dest in jobs:
        export_split(idx_dir, split, count, seed, dest)
        tracked = track_and_push(dest)
        console.print(Text.assemble((str(dest), "green"), f": {count} images x 10 classes from the official {split} "
                                    f"file; DVC md5 {tracked.md5}, pushed to {tracked.remote}"))  # fmt: skip
    _hint_commit([dest for _, _, dest in jobs])


def _hint_commit(datasets: list[Path]) -> None:
    files = " ".join(f"{d}.dvc" for d in datasets)
    console.print(f"record this data version in git: git add {files} && git commit", style="dim")


@import_app.command("folder")
def import_folder(
    src: Annotated[Path, typer.Argument(help="A class-per-folder image tree.")],
    name: Annotated[str, typer.Option(help="Dataset name: data/<name>/.")],
    data_root: Annotated[Path, typer.Option(help="Folder holding datasets.")] = Path("data"),
    replace: Annotated[
        bool, typer.Option(help="Replace an existing data/<name>/ (swapped in whole once the copy is complete).")
    ] = False,
) -> None:
    """Copy the regular files of a class-per-folder image tree into data/<name>/ and track it (hidden files
    skipped; links leaving the tree, FIFOs and devices skipped and named)."""

    from headstart.library.data.folder_import import check_dataset_name, copy_image_tree
    from headstart.library.data.versioning import track_and_push

    report = copy_image_tree(src, data_root / check_dataset_name(name), replace=replace)
    for path, why in report.skipped:
        console.print(Text.assemble(("skipped ", "yellow"), f"{src / path}: {why}"))
    tracked = track_and_push(report.dest)
    pushed = f": {report.copied} files, DVC md5 {tracked.md5}, pushed to {tracked.remote}"
    console.print(Text.assemble((str(report.dest), "green"), pushed))
    _hint_commit([report.dest])


@app.command()
def validate(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (class-per-folder).")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Where the manifest (CSV) and the report (JSON) go.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of a table.")] = False,
) -> None:
    """Build the manifest, decode every image, run the GX suite; exit 1 on any failure."""
    from headstart.library.data.validation import save_report, validate_dataset

    out = out or Path("runs") / "validate" / directory.name
    manifest, report = validate_dataset(directory, settings(params, set_).validate_)
    save_report(report, manifest, out)
    if as_json:
        typer.echo(report.to_json())
    else:
        print_report(report, out)
    raise typer.Exit(0 if report.success else 1)


@app.command()
def run(
    data: Annotated[Path | None, typer.Option(help="Dataset folder (sets data.dir).")] = None,
    test_data: Annotated[Path | None, typer.Option(help="Fixed evaluation set (sets data.test_dir).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    run_dir: Annotated[Path | None, typer.Option(help="Output folder (default runs/<time>-<id>).")] = None,
    summary_json: Annotated[Path | None, typer.Option(help="Also write the run summary here.")] = None,
    allow_class_change: AllowClassChangeOpt = False,
) -> None:
    """Run the retrain flow: the pipeline table's steps (validate → split → train → evaluate → gate → register →
    report → promote → publish)."""
    from flows.retrain import retrain
    from flows.temporary_api import share_temporary_api
    from headstart.cli.interrupts import sigterm_as_ctrl_c
    from headstart.cli.progress import progress_bars

    sigterm_as_ctrl_c()  # a stopped run stops its temporary Prefect server and torchrun ranks too
    share_temporary_api()
    overrides = list(set_ or [])
    if data is not None:
        overrides.append(f"data.dir={json.dumps(str(data))}")  # quoted: a folder named 2024 or yes is a name
        overrides += _model_named_after(data, params, overrides)
    if test_data is not None:
        overrides.append(f"data.test_dir={json.dumps(str(test_data))}")
    with progress_bars():
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


@app.command()
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
    from flows.sweep import sweep as sweep_flow
    from flows.sweep import task_runner
    from flows.temporary_api import share_temporary_api
    from headstart.cli.interrupts import sigterm_as_ctrl_c

    sigterm_as_ctrl_c()  # a stopped sweep stops its temporary Prefect server and Dask workers too
    share_temporary_api()  # one for the Dask workers too, which would each start their own
    runner = task_runner(cluster)
    try:  # read here: a file the user names may be anywhere; the flow records its text and digest
        sweep_text = sweep_file.read_text()
    except OSError as exc:
        raise ConfigError(f"{sweep_file}: cannot read the sweep file ({exc.strerror})") from None
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
            f"--data {data}: {data.name!r} cannot name the model in the registry; --set registry.model_name=NAME"
        ) from None
    console.print(f"registry.model_name: {data.name} (the dataset's name; --set registry.model_name=NAME to choose)")
    return [f"registry.model_name={json.dumps(data.name)}"]  # quoted: a dataset named 0001 or true is a name


@backbones_app.callback()
def backbones(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per preset.")] = False,
) -> None:
    """List the presets: family, smallest input, weight sources, and whether weights are offline here."""
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
        }
        for p in list_presets()
    ]
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    table = Table("preset", "family", "min px", "weight sources", "offline weights here")
    for row in rows:
        offline = row["offline_weights"] or "-"
        table.add_row(row["name"], row["family"], str(row["min_input_size"]), ", ".join(row["weights"]), offline)
    console.print(table)
    console.print("model.backbone also takes any other timm name; model.weights: package:NAME, file:PATH, hub, none")


@backbones_app.command("verify")
def backbones_verify(
    name: Annotated[str, typer.Argument(help="timm model name, e.g. tf_efficientnet_lite0.")],
    images: Annotated[list[Path], typer.Argument(help="Photos to classify.")],
    weights: Annotated[str, typer.Option("--weights", help="package:NAME, file:PATH, hub or none.")],
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


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="Port for the Prefect server it starts (127.0.0.1).")] = 4200,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics); off when not given.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics endpoint binds.")] = "127.0.0.1",
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Start a Prefect server (unless PREFECT_API_URL is set), the work pools, the deployments, the workers and,
    with a webhook URL configured, the notification automations; Ctrl-C (or SIGTERM) stops what it started."""
    import signal
    import threading

    from flows.notifications import block_name
    from flows.services import AUTH_FILE, start_services

    chosen = settings(params, set_)
    services = start_services(Path.cwd(), port, chosen.registry.model_name, chosen)
    console.print(f"Prefect UI: {services.ui_url}   API: {services.api_url}")
    if services.auth and (Path.cwd() / AUTH_FILE).is_file():
        console.print(
            f"the API asks for the auth string in {AUTH_FILE} (0600): the UI prompts for it; headstart commands run "
            f"here send it; for the prefect CLI: export PREFECT_API_URL={services.api_url} "
            f"PREFECT_API_AUTH_STRING=$(cat {AUTH_FILE})"
        )
    elif services.auth:
        console.print("the API asks for the auth string in $PREFECT_API_AUTH_STRING (the UI prompts for it)")
    console.print(f"deployments retrain/nightly, retrain/on-data-change, retrain/gpu run in {Path.cwd()}")
    for name in services.automations:
        console.print(f"automation: {name} (webhook block {block_name(chosen.registry.model_name)})")
    metrics = None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if metrics_port is not None:
            from flows.ops_metrics import start_metrics_server

            metrics = start_metrics_server(chosen, metrics_port, metrics_host, services.api_url, services.auth)
            console.print(f"Prometheus metrics: http://{metrics_host}:{metrics_port}/metrics")
        console.print("logs: runs/serve/; stop with Ctrl-C")
        while not stop.wait(1.0) and all(p.poll() is None for p in services.processes):
            pass
    finally:
        if metrics is not None:
            metrics.shutdown()
        services.stop()
        console.print("stopped what serve started")


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Workspace for the demo (created).")] = Path(".headstart/demo"),
    full: Annotated[
        bool, typer.Option(help="The shipped params.yaml on 200 → 300 images/class (else trimmed for ~5 min).")
    ] = False,
    per_class: Annotated[int | None, typer.Option(help="Images per class in data v1 (default: by --full).")] = None,
    v2_per_class: Annotated[int | None, typer.Option(help="Images per class in data v2.")] = None,
    test_per_class: Annotated[int | None, typer.Option(help="Fixed evaluation images per class.")] = None,
    port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    keep_serving: Annotated[
        bool, typer.Option(help="Keep the server and worker up afterwards (Ctrl-C stops).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each triggered run.")] = 1200,
) -> None:
    """The life cycle: serve; data v1 → watcher event → triggered retrain → champion; data v2 → the same →
    the gate's decision against the champion."""
    from dataclasses import replace

    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    from flows.demo import FULL, QUICK, apply_trims, lifecycle
    from flows.services import start_services
    from tasks.dvc_stages import init_pipeline_workspace

    plan = FULL if full else QUICK
    sizes = {"per_class": per_class, "v2_per_class": v2_per_class, "test_per_class": test_per_class}
    plan = replace(plan, **{name: value for name, value in sizes.items() if value is not None})
    root = init_pipeline_workspace(directory).resolve()
    os.chdir(root)
    apply_trims(root, plan.trims)
    console.print(Text.assemble((f"{'Full' if full else 'Quick'} demo", "bold"), f": {plan.describe()}"))
    if not full:
        console.print("  trimmed for speed; the shipped defaults on more data: make demo-full (headstart demo --full)")
    chosen = settings(Path("params.yaml"), None)
    services = start_services(root, port, chosen.registry.model_name, chosen)
    os.environ.update(services.client_env())  # the watcher's and the CLI's subprocesses
    console.print(Text.assemble(("Prefect server and worker up", "bold"), f": UI {services.ui_url}"))
    try:
        with temporary_settings(updates={PREFECT_API_URL: services.api_url, PREFECT_API_AUTH_STRING: services.auth}):
            versions = [(plan.per_class, plan.test_per_class), (plan.v2_per_class, 0)]
            say = lambda line: console.print(f"  {line}", overflow="ellipsis", no_wrap=True)  # noqa: E731
            summaries = lifecycle(root, versions, say, timeout)  # log lines may hold [brackets]: never markup
        for label, summary in zip(("data v1", "data v2"), summaries, strict=True):
            scored = f": test accuracy {summary['metrics']['accuracy']:.4f} "
            scored += f"(run {summary['run_dir']}, triggered by {summary.get('trigger')})"
            console.print(Text.assemble("\n", (label, "bold"), scored))
            print_decision(summary["decision"])
            console.print(f"version {summary['version']}; champion now {summary['champion']}")
            console.print(f"run page: {services.ui_url}/runs/flow-run/{summary['run_id']}")
        from headstart.library.reports.dashboard import artifact_key

        overview = artifact_key(chosen.registry.model_name, "overview")
        console.print(
            f"overview across retrains: {services.ui_url}/artifacts/key/{overview} (static: headstart report)"
        )
        console.print(f"\nPrefect UI: {services.ui_url} (flow runs, deployments, events, concurrency limits)")
        console.print(f"to browse later: cd {root} && headstart serve   (the server's database is kept there)")
        if keep_serving:
            console.print("serving until Ctrl-C")
            while all(p.poll() is None for p in services.processes):
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        services.stop()


@app.command()
def watch(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per change.")] = False,
) -> None:
    """Compare each tracked dataset's DVC md5 with its latest registered version; emit one event per new change."""
    from flows.watch import watch as watch_data

    changes = watch_data(Path.cwd(), params, set_)
    for change in changes:
        if as_json:
            typer.echo(json.dumps(change))
        else:
            state = "event emitted" if change["emitted"] else "already emitted, skipped"
            if change["pending"]:
                state = ("sent but not confirmed by the server: pending, sent again by the next watch", "red")
            console.print(Text.assemble(f"{change['dataset']}: {change['old_md5']} → {change['new_md5']}: ", state))
    if not changes and not as_json:
        console.print("no data changes")
    if any(change["pending"] for change in changes):
        raise typer.Exit(1)  # a scheduled watch shows as failed until the server has every change


def main() -> None:
    """Console entry point: HeadstartErrors become one clear message, never a traceback."""
    try:
        app()
    except (ValidationFailed, RunFailed, ExportMismatch) as exc:
        err_console.print(str(exc), style="red")
        sys.exit(1)
    except HeadstartError as exc:
        err_console.print(Text.assemble(("error:", "red"), f" {exc}"))
        sys.exit(2)
