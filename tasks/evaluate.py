"""The evaluate step: the trained model scored on the test split (metrics and confusion table)."""

from __future__ import annotations

from dataclasses import replace

from headstart.library.evaluation.metrics import Evaluation, evaluate, load_evaluation, save_evaluation
from headstart.library.evaluation.transfer import measure_transfer
from headstart.library.training.features import feature_store
from tasks.step import StepContext


def run(ctx: StepContext) -> Evaluation:
    """Score the challenger on the test rows of the split."""
    trained, split, store = ctx.result("train"), ctx.result("split").table, feature_store(ctx.params)
    evaluation = evaluate(trained.model_dir, split, ctx.params.evaluate.batch_size, store)
    if ctx.params.evaluate.transfer_report:
        transfer = measure_transfer(trained.config, split, ctx.params, store)
        evaluation = replace(evaluation, metrics={**evaluation.metrics, "transfer": transfer})
    save_evaluation(evaluation, ctx.run)
    return evaluation


def load(ctx: StepContext) -> Evaluation:
    """Metrics and per-image predictions as written."""
    return load_evaluation(ctx.run)
