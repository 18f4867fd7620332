"""The register step: every challenger becomes an immutable registry version, PASS or FAIL.

The version id is chosen and written to the run folder before the upload starts, so a retry of the run
completes that one version instead of registering a second one; and a run that began registering is never
trained again (see :func:`begun`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from headstart.library.data.versioning import data_md5_of
from headstart.library.registry.registration import planned_version, register_run
from headstart.library.registry.registry import open_registry
from tasks.step import StepContext, code_fingerprint


def run(ctx: StepContext) -> str:
    """Upload the run's model and records as a version (the one an earlier attempt began, if any); returns its
    id."""
    registry = ctx.params.registry
    version = register_run(open_registry(registry), ctx.run, resume_key(ctx), registry.incomplete_grace_hours)
    ctx.run.registered.write_text(json.dumps({"version": version}))
    return version


def begun(ctx: StepContext) -> str | None:
    """The version id an earlier attempt of this run (same params, same data) chose before uploading, if any.

    The run folder's model and records were complete when that attempt began to register them, so a retry reads
    them back instead of training again: the version it finishes is the one the gate judged.
    """
    return planned_version(ctx.run, resume_key(ctx))


def resume_key(ctx: StepContext) -> str:
    """What a rerun must share with the attempt that began registering to read its results back: params, the
    data versions, ``allow_class_change`` and the code of every step before this one. Data not tracked by DVC
    cannot be told apart cheaply, so then only a retry of the same flow run matches."""
    folders = [d for d in (ctx.params.data.dir, ctx.params.data.test_dir) if d]
    data = [data_md5_of(Path(d)) for d in folders]
    same_run = ctx.flow_run_id if None in data else None
    read_back = list(ctx.steps.values())[: list(ctx.steps).index("register")]
    key = [ctx.params.digest(), data, same_run, ctx.allow_class_change, code_fingerprint(read_back)]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def load(ctx: StepContext) -> str:
    """The version id as recorded."""
    return json.loads(ctx.run.registered.read_text())["version"]
