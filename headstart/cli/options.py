"""Options every command that reads params shares: ``--params FILE`` and ``--set KEY=VALUE``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from headstart.ground.params import Params

ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a params key: KEY=VALUE (repeatable).")]
AllowClassChangeOpt = Annotated[
    bool, typer.Option(help="Let a challenger with a different class set replace the champion.")
]


def settings(params: Path, overrides: list[str] | None) -> Params:
    """params.yaml (or the defaults, outside a workspace) with the ``--set`` overrides applied and validated."""
    from headstart.ground.params import load_params_or_defaults

    return load_params_or_defaults(params, overrides)
