"""The ``headstart`` command line: every command and where it lives. Each group's commands are in a module of
their own (thin typer functions over the flows, the steps in ``tasks/`` and the library); this page registers them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text
from typer.core import TyperGroup

from headstart.cli import backbones, data, models, ops, pipeline, registry, worker, workspace
from headstart.cli.output import text_console
from headstart.ground.environment import apply_quiet_environment, log_project_at_info
from headstart.ground.errors import ExportMismatch, HeadstartError, RunFailed, ValidationFailed


class HeadstartCommands(TyperGroup):
    """The top-level group: a HeadstartError becomes one clear message on stderr and an exit status (1: a check
    failed, 2: refused or could not run), never a traceback; the same under CliRunner as in a terminal."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except (ValidationFailed, RunFailed, ExportMismatch) as exc:
            text_console(stderr=True).print(str(exc), style="red", soft_wrap=True)  # copyable: no line breaks added
            raise typer.Exit(1) from None
        except HeadstartError as exc:
            text_console(stderr=True).print(Text.assemble(("error:", "red"), f" {exc}"), soft_wrap=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    help="Keep image classifiers fresh by transfer learning.", no_args_is_help=True, cls=HeadstartCommands
)

# Workspace: make one (with your own images), or watch the whole life cycle on Fashion-MNIST.
app.command("init")(workspace.init)
app.command("demo")(workspace.demo)

# Data: versions under DVC, where they are stored, and checking a folder.
data_app = typer.Typer(help="Datasets under DVC.", no_args_is_help=True)
import_app = typer.Typer(help="Import a dataset into data/<name>/ and track it with DVC.", no_args_is_help=True)
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")
import_app.command("fashion-mnist")(data.import_fashion_mnist)
import_app.command("folder")(data.import_folder)
data_app.command("remote")(data.remote)
data_app.command("pull")(data.pull)
app.command("validate")(data.validate)

# Pipeline: a retrain, a sweep of trials, one step as dvc repro runs it, a rebuild of a registered version.
app.command("run")(pipeline.run)
app.command("sweep")(pipeline.sweep)
app.command("step")(pipeline.step)
app.command("reproduce")(pipeline.reproduce)

# Backbones: the presets and their weights.
backbones_app = typer.Typer(
    help="Backbone presets and their pretrained weights.", invoke_without_command=True, callback=backbones.list_presets
)
app.add_typer(backbones_app, name="backbones")
backbones_app.command("verify")(backbones.verify)

# Registry: versions, the champion alias and its history.
registry_app = typer.Typer(help="The model registry: versions and the champion alias.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
for name, command in (("ls", registry.ls), ("show", registry.show), ("promote", registry.promote),
                      ("rollback", registry.rollback), ("pull", registry.pull), ("push", registry.push),
                      ("gc", registry.gc)):  # fmt: skip
    registry_app.command(name)(command)

# Models: using a registered model.
app.command("predict")(models.predict)
app.command("export")(models.export)

# Operations: schedules and triggers, data changes, the overview.
app.command("serve")(ops.serve)
app.command("watch")(ops.watch)
app.command("report")(ops.report)

# Workers on machines that share no file system with the workspace.
worker_app = typer.Typer(help="Run a worker that shares no file system with the workspace.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
worker_app.command("dask")(worker.dask)
worker_app.command("prefect")(worker.prefect)


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
    _use_workspace_api()
    # Step progress (epochs, freezing) reaches the terminal and, through Prefect's extra loggers, the UI.
    log_project_at_info()


def _use_workspace_api() -> None:
    """Inside a workspace whose ``headstart serve`` is running, reach its API (unless PREFECT_API_URL is set) and send
    the auth string it generated (unless one is set): read before Prefect is imported, which reads its settings
    once. So `headstart watch` in another shell needs no export."""
    from flows.services import AUTH_ENV, is_loopback, workspace_api_url, workspace_auth_string

    if not os.environ.get("PREFECT_API_URL") and (recorded := workspace_api_url(Path.cwd())):
        os.environ["PREFECT_API_URL"] = recorded
    if os.environ.get(AUTH_ENV) or not is_loopback(os.environ.get("PREFECT_API_URL", "")):
        return  # one is set already, or the API is elsewhere: the workspace's secret stays here
    if auth := workspace_auth_string(Path.cwd()):
        os.environ[AUTH_ENV] = auth


def main() -> None:
    """Console entry point (``headstart``)."""
    app()
