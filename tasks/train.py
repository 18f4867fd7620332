"""The train step: the configured scenario (features, finetune, hybrid or auto) into the run's model folder.

With ``train.distributed.nproc`` > 1 a finetune or hybrid step runs under torchrun: N processes each run this
same step (``headstart step train``), in DDP, on the params the parent wrote into the run folder.
"""

from __future__ import annotations

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
    params = resolve_scenario(split, ctx.params)
    nproc = params.train.distributed.nproc
    if nproc > 1 and not under_torchrun():
        if params.train.scenario != "features":
            return _launch(ctx, params, nproc)
        log.info("train.distributed.nproc=%d: the features scenario fits its classifier in one process", nproc)
    # the code's fingerprint: recorded in lineage, and part of the resume key (other training code never resumes);
    # the params digest is of the params as given (auto unresolved), so it matches params.yaml and --set
    record = {
        **lineage.collect(ctx.workspace, ctx.params, ctx.flow_run_id),
        "code_sha256": code_fingerprint([ctx.steps["train"]]),
    }
    return train(split, params, ctx.run, record)


def _launch(ctx: StepContext, params: Params, nproc: int) -> TrainResult:
    """This step in ``nproc`` processes under torchrun, on the resolved params (``auto`` already decided, so
    every rank trains the same scenario); the model is read back from the run folder once they finish."""
    p = params.train
    env = distributed.launch_environment(nproc, resolve_accelerator(p.device, p.precision, p.compile).device.type)
    ctx.run.root.mkdir(parents=True, exist_ok=True)
    ctx.run.train_params.write_text(yaml.safe_dump(params.as_dict(), sort_keys=False))
    command = distributed.launch_command(
        nproc, ["train", "--out", str(ctx.run.root.resolve()), "--params", str(ctx.run.train_params.resolve())]
    )
    distributed.run_ranks(command, ctx.workspace, {**env, FLOW_RUN_ENV: ctx.flow_run_id or ""})
    return load_train_result(ctx.run)


def load(ctx: StepContext) -> TrainResult:
    """The saved model's config and curves."""
    return load_train_result(ctx.run)
