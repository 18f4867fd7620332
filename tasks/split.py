"""The split step: train/val/test by content hash; a fixed test set, when set, is the test split."""

from __future__ import annotations

from pathlib import Path

from headstart.library.data.split import SplitResult, load_split, make_split, save_split
from tasks.step import Step, StepContext


def run(ctx: StepContext) -> SplitResult:
    """Split the validated manifests and write the split table."""
    validated = ctx.result("validate")
    data = ctx.params.data
    result = make_split(
        validated.data_manifest,
        Path(data.dir),
        ctx.params.split,
        validated.test_manifest,
        Path(data.test_dir) if data.test_dir else None,
    )
    save_split(result, ctx.run.split)
    return result


def load(ctx: StepContext) -> SplitResult:
    """The split table as written (how many test duplicates were dropped is not recorded there)."""
    return SplitResult(load_split(ctx.run.split), None)


STEP = Step(name="split", run=run, load=load, reads=("validate", "validate-test"), writes=("split",), params=("split",))
