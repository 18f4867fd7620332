"""The split step: train/val/test by content hash (a fixed test set, when set, is the test split); training
near-duplicates of test images dropped, stopped on or kept per ``health.leakage`` (``near_duplicates.json``)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from headstart.ground.errors import ValidationFailed
from headstart.library.data.leakage import apply_policy, find_duplicates, load_report, save_report
from headstart.library.data.split import SplitResult, load_split, make_split, save_split
from tasks.step import StepContext, first_few

log = logging.getLogger(__name__)


def run(ctx: StepContext) -> SplitResult:
    """Split the validated manifests, search for near duplicates, apply the leakage policy, write both."""
    validated = ctx.result("validate")
    data = ctx.params.data
    result = make_split(
        validated.data_manifest,
        Path(data.dir),
        ctx.params.split,
        validated.test_manifest,
        Path(data.test_dir) if data.test_dir else None,
    )
    report = find_duplicates(result.table, ctx.params.health, ctx.params.validate_.workers, validated.thumbnails)
    log.info("near duplicates: %s", report.summary())
    save_report(report, ctx.run.near_duplicates)
    result = replace(result, table=apply_policy(result.table, report), duplicates=report)
    save_split(result, ctx.run.split)
    return result


def check(ctx: StepContext, result: SplitResult) -> None:
    """Stop the run when ``health.leakage`` is ``fail`` and a training image near-duplicates a test image."""
    report = result.duplicates
    if report is None or report.policy != "fail" or not report.leaks:
        return
    shown = first_few([f"{leak['file']} ~ {leak['test_file']} ({leak['similarity']})" for leak in report.leaks])
    raise ValidationFailed(
        f"{len(report.leaks)} training image(s) near-duplicate test images (health.leakage=fail): {shown}. "
        f"Full list: {ctx.run.near_duplicates}"
    )


def load(ctx: StepContext) -> SplitResult:
    """The split table and near-duplicate report as written (how many exact test duplicates were dropped is not
    recorded there)."""
    return SplitResult(load_split(ctx.run.split), None, load_report(ctx.run.near_duplicates))
