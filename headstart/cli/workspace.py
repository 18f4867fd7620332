"""Workspace commands: ``headstart init`` (a workspace, with your own images when ``--data`` is given) and
``headstart demo`` (the whole life cycle on Fashion-MNIST)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from headstart.cli.data import describe_remote
from headstart.cli.options import settings
from headstart.cli.output import print_decision, text_console

console = text_console()


def init(
    directory: Annotated[Path, typer.Argument(help="Workspace folder (created if missing).")],
    data: Annotated[
        Path | None,
        typer.Option(help="Your images (one sub-folder per class): copied to data/<name>/, named by params.yaml."),
    ] = None,
    test_data: Annotated[
        Path | None,
        typer.Option(help="A fixed test set (one sub-folder per class) for --data; without it, a split by hash."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name of the dataset and of its model (default: the --data folder's name).")
    ] = None,
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
    `dvc repro`) and a default DVC remote, kept in .dvc/config.local (never committed). With --data, your image
    folder becomes its dataset: imported under DVC, pushed, and named in params.yaml (data.dir, data.test_dir,
    registry.model_name), so `headstart run`, `serve` and `watch` work on it as it is."""
    from headstart.library.data.versioning import check_remote_url, ensure_default_remote

    if data is None and (test_data is not None or name is not None):
        raise typer.BadParameter("--test-data and --name go with --data FOLDER", param_hint="--data")
    remote = check_remote_url(remote) if remote is not None else None  # fails before anything is made (or imported)
    if data is not None:  # named before the workspace is made
        from headstart.library.data.own_dataset import check_sources

        check_sources(directory, data, test_data, name)
    from tasks.dvc_stages import init_pipeline_workspace

    root = init_pipeline_workspace(directory, params_template, remote)
    described = describe_remote(ensure_default_remote(root))
    console.print(f"workspace {root}: git + DVC, params.yaml, dvc.yaml, {described}")
    if data is None:
        return
    from tasks.dvc_stages import adopt_own_dataset

    adopted = adopt_own_dataset(root, data, test_data, name)
    for source, (report, tracked) in zip((data, test_data), adopted.imported, strict=False):
        imported = f": {report.copied} files, DVC md5 {tracked.md5}, pushed to {tracked.remote}"
        console.print(Text.assemble((str(report.dest), "green"), imported))
        for path, why in report.skipped:
            console.print(Text.assemble(("skipped ", "yellow"), f"{source / path}: {why}"))
    named = ", ".join(f"{key}: {value if value is not None else 'null (a split by hash)'}" for key, value in
                      adopted.params.items())  # fmt: skip
    console.print(f"params.yaml: {named}; committed")
    console.print(f"next: cd {directory} && headstart run   (then headstart serve, and headstart watch on new data)")


def demo(
    directory: Annotated[Path, typer.Argument(help="Workspace for the demo (created).")] = Path(".headstart/demo"),
    full: Annotated[
        bool, typer.Option(help="The shipped params.yaml on 200 → 300 images/class (else trimmed for ~3½ min).")
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
