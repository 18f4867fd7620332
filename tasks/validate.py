"""The validate step: manifest + GX suite for the training data and the fixed test set; stops on failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from headstart.ground.errors import ValidationFailed
from headstart.ground.run_folder import Dataset
from headstart.library.data.manifest import load_thumbnails
from headstart.library.data.split import load_manifest_table
from headstart.library.data.validation import ValidationReport, load_report, save_report, validate_dataset
from tasks.step import StepContext, first_few


@dataclass(frozen=True)
class ValidatedData:
    """The validation reports and manifests of the training data and, when set, the fixed test set."""

    data: ValidationReport
    data_manifest: pd.DataFrame
    test: ValidationReport | None = None
    test_manifest: pd.DataFrame | None = None
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)  # by file (as the split names it), both sets


def _folders(ctx: StepContext) -> list[tuple[Dataset, Path]]:
    data = ctx.params.data
    return [("data", Path(data.dir))] + ([("test", Path(data.test_dir))] if data.test_dir else [])


def failure_message(report: ValidationReport, report_path: Path) -> str:
    """The first failures in words, and where the full report is."""
    shown = first_few([f"{f.subject}: {f.reason}" for f in report.failures])
    return f"{report.root} failed validation: {shown}. Full report: {report_path}"


def run(ctx: StepContext) -> ValidatedData:
    """Validate every dataset the run reads and write each report (:func:`check` stops the run on a failure)."""
    found: dict[str, tuple[pd.DataFrame, ValidationReport]] = {}
    thumbnails: dict[str, np.ndarray] = {}
    for dataset, folder in _folders(ctx):
        manifest, report = validate_dataset(folder, ctx.params.validate_)
        save_report(report, manifest, ctx.run.validation_dir(dataset))
        found[dataset] = (manifest.table, report)
        thumbnails.update({str(folder / path): t for path, t in manifest.thumbnails.items()})
    return _validated(found, thumbnails)


def check(ctx: StepContext, validated: ValidatedData) -> None:
    """Raise ValidationFailed, naming the first failures and the full report, when any dataset failed."""
    for dataset, report in (("data", validated.data), ("test", validated.test)):
        if report is not None and not report.success:
            raise ValidationFailed(failure_message(report, ctx.run.validation_report(dataset)))


def load(ctx: StepContext) -> ValidatedData:
    """The reports and manifests as the step wrote them."""
    found = {
        dataset: (load_manifest_table(ctx.run.manifest(dataset)), load_report(ctx.run.validation_report(dataset)))
        for dataset, _ in _folders(ctx)
    }
    thumbnails = {
        str(folder / path): t
        for dataset, folder in _folders(ctx)
        for path, t in load_thumbnails(ctx.run.thumbnails(dataset)).items()
    }
    return _validated(found, thumbnails)


def _validated(
    found: dict[str, tuple[pd.DataFrame, ValidationReport]], thumbnails: dict[str, np.ndarray]
) -> ValidatedData:
    test_manifest, test = found.get("test", (None, None))
    return ValidatedData(found["data"][1], found["data"][0], test, test_manifest, thumbnails)
