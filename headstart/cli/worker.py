"""``headstart worker``: a worker on a machine that shares no file system with the workspace (a Dask worker for
``headstart sweep --cluster tcp://``, a Prefect worker for the ``gpu`` pool). It runs in the current directory,
which becomes its own: nothing of the coordinator's disk is read."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from headstart.ground.errors import ConfigError


def dask(
    scheduler: Annotated[str, typer.Argument(help="The scheduler's address, tcp://HOST:8786.")],
    host: Annotated[
        str, typer.Option(help="Address this worker serves on (the scheduler must reach it).")
    ] = "127.0.0.1",
) -> None:
    """Run one Dask worker for sweep trials: each trial checks its data version out from the DVC remote into
    ./headstart-worker and hands its model back through the registry's bucket."""
    from flows.workers import dask_worker_command, dask_worker_environment

    _exec(dask_worker_command(scheduler, host), dask_worker_environment(os.environ))


def prefect(
    pool: Annotated[str, typer.Option(help="The work pool to poll.")] = "gpu",
    run_once: Annotated[bool, typer.Option(help="Take the runs scheduled now, then stop (Prefect's own).")] = False,
) -> None:
    """Run a Prefect process worker for POOL: each deployment run clones the workspace's git remote, pulls its data
    and registers its model in the registry's bucket."""
    from flows.workers import prefect_worker_command

    _exec(prefect_worker_command(pool) + (["--run-once"] if run_once else []), dict(os.environ))


def _exec(command: list[str], environment: dict[str, str]) -> None:
    """Replace this process with the worker, once the environment it needs is there."""
    from flows.workers import WORKER_ENVIRONMENT, missing_environment

    if missing := missing_environment(environment):
        raise ConfigError(f"{', '.join(missing)} not set: {'; '.join(WORKER_ENVIRONMENT[m] for m in missing)}")
    os.execvpe(command[0], command, environment)
