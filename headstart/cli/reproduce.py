"""``headstart reproduce VERSION``: rebuild a registered version from its record and the DVC remote, and compare."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from headstart.cli.options import ParamsOpt, SetOpt, settings
from headstart.cli.output import text_console
from headstart.ground.errors import ExportMismatch

console = text_console()


class NotReproduced(ExportMismatch):
    """The rebuild differs from the record (exit status 1, like any other failed check)."""


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


def reproduce(
    ref: Annotated[str, typer.Argument(metavar="VERSION", help="A version id, or 'champion'.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Scratch folder to rebuild in (new or empty); default runs/reproduce-<time>.")
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
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
