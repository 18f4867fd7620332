"""The evaluate step: the trained model scored on the test split (metrics and confusion table)."""

from __future__ import annotations

from headstart.library.evaluation.metrics import Evaluation, evaluate, load_evaluation, save_evaluation
from headstart.library.training.features import feature_store
from tasks.step import Step, StepContext


def run(ctx: StepContext) -> Evaluation:
    """Score the challenger on the test rows of the split."""
    model_dir, split = ctx.result("train").model_dir, ctx.result("split").table
    evaluation = evaluate(model_dir, split, ctx.params.evaluate.batch_size, feature_store(ctx.params))
    save_evaluation(evaluation, ctx.run)
    return evaluation


def load(ctx: StepContext) -> Evaluation:
    """Metrics and per-image predictions as written."""
    return load_evaluation(ctx.run)


STEP = Step(
    name="evaluate",
    run=run,
    load=load,
    reads=("model", "split"),
    metrics=("metrics",),
    plots=("confusion",),
    params=("evaluate",),
)
