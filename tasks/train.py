"""The train step: the configured scenario (features, finetune, hybrid or auto) into the run's model folder.

With ``train.distributed.nproc`` > 1 a finetune or hybrid step runs under torchrun: N processes each run this
same step (``headstart step train``), in DDP, on the params the parent wrote into the run folder.
"""

from __future__ import annotations

import json
import logging

import yaml

from headstart.ground.params import Params
from headstart.library import lineage
from headstart.library.training import distributed
from headstart.library.training.accelerator import resolve_accelerator
from headstart.library.training.scenarios import TrainResult, load_train_result, resolve_scenario, train
from headstart.library.training.world import FLOW_RUN_ENV, under_torchrun
from tasks.step import StepContext, code_fingerprint

log = logging.getLogger(__name__)


def run(ctx: StepContext) -> TrainResult:
    """Train on the split's train rows (val rows are scored per epoch); resumes from the run's checkpoint."""
    split = ctx.result("split").table
    params, choice = resolve_scenario(split, ctx.params)
    recorded = _lineage(ctx, params) | ({"scenario_choice": choice} if choice else {})
    nproc = params.train.distributed.nproc
    if nproc > 1 and not under_torchrun():
        if params.train.scenario != "features":
            return _launch(ctx, params, nproc, recorded)
        log.info("train.distributed.nproc=%d: the features scenario fits its classifier in one process", nproc)
    return train(split, params, ctx.run, recorded)


def _lineage(ctx: StepContext, resolved: Params) -> dict:
    """The lineage record of this training (under torchrun: the one the launching step wrote for its ranks).

    The code's fingerprint is recorded and is part of the resume key (other training code never resumes); the
    params digest is of the params as given (auto unresolved), so it matches params.yaml and --set. The params
    themselves, as given and as resolved, and the fingerprint of every step ``headstart reproduce`` runs again
    make the record replayable."""
    if under_torchrun() and ctx.run.train_lineage.is_file():
        return json.loads(ctx.run.train_lineage.read_text())
    from tasks.pipeline import REBUILT_STEPS

    return {
        **lineage.collect(ctx.workspace, ctx.params, ctx.flow_run_id),
        "code_sha256": code_fingerprint([ctx.steps["train"]]),
        "rebuild_code_sha256": code_fingerprint([ctx.steps[name] for name in REBUILT_STEPS]),
        "params": lineage.recordable_params(ctx.params),
        "resolved_params": lineage.recordable_params(resolved),
    }


def _launch(ctx: StepContext, params: Params, nproc: int, recorded: dict) -> TrainResult:
    """This step in ``nproc`` processes under torchrun, on the resolved params (``auto`` already decided, so
    every rank trains the same scenario); the model is read back from the run folder once they finish."""
    p = params.train
    env = distributed.launch_environment(nproc, resolve_accelerator(p.device, p.precision, p.compile).device.type)
    ctx.run.root.mkdir(parents=True, exist_ok=True)
    ctx.run.train_params.write_text(yaml.safe_dump(params.as_dict(), sort_keys=False))
    ctx.run.train_lineage.write_text(json.dumps(recorded))  # the params as given, not the ranks'
    command = distributed.launch_command(
        nproc, ["train", "--out", str(ctx.run.root.resolve()), "--params", str(ctx.run.train_params.resolve())]
    )
    distributed.run_ranks(command, ctx.workspace, {**env, FLOW_RUN_ENV: ctx.flow_run_id or ""})
    return load_train_result(ctx.run)


def load(ctx: StepContext) -> TrainResult:
    """The saved model's config and curves."""
    return load_train_result(ctx.run)
