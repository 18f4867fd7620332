"""The train step: the configured scenario (features, finetune, hybrid or auto) into the run's model folder."""

from __future__ import annotations

from headstart.library import lineage
from headstart.library.training.scenarios import TrainResult, load_train_result, train
from tasks.step import Step, StepContext, code_fingerprint


def run(ctx: StepContext) -> TrainResult:
    """Train on the split's train rows (val rows are scored per epoch); resumes from the run's checkpoint."""
    # the code's fingerprint: recorded in lineage, and part of the resume key (other training code never resumes)
    record = {**lineage.collect(ctx.workspace, ctx.params, ctx.flow_run_id), "code_sha256": code_fingerprint([STEP])}
    return train(ctx.result("split").table, ctx.params, ctx.run, record)


def load(ctx: StepContext) -> TrainResult:
    """The saved model's config and curves."""
    return load_train_result(ctx.run)


STEP = Step(
    name="train",
    run=run,
    load=load,
    reads=("split", "health"),  # health: trains only on data that passed it
    writes=("model",),  # checkpoints/ is resume state, not an output
    plots=("curves",),
    params=("augment", "model", "train", "evaluate.batch_size"),
)
