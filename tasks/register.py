"""The register step: every challenger becomes an immutable registry version, PASS or FAIL."""

from __future__ import annotations

import json

from headstart.library.registry.registration import register_run
from headstart.library.registry.registry import open_registry
from tasks.step import Step, StepContext


def run(ctx: StepContext) -> str:
    """Upload the run's model and records as a new version; returns its id."""
    version = register_run(open_registry(ctx.params.registry), ctx.run)
    ctx.run.registered.write_text(json.dumps({"version": version}))
    return version


def load(ctx: StepContext) -> str:
    """The version id as recorded."""
    return json.loads(ctx.run.registered.read_text())["version"]


STEP = Step(
    name="register",
    run=run,
    load=load,
    reads=("model", "metrics", "confusion", "decision", "model_card"),
    writes=("registered",),
    params=("registry",),
    retries=2,
)
