"""Dataset validation: a Great Expectations suite over the manifest and tables derived from it.

GX's core expectations do not count per class, so per-class counts, labels per image (sha256) and the
class-imbalance ratio are derived tables validated alongside the manifest. Every failure names the file,
class or image it concerns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from headstart.ground.params import ValidateParams
from headstart.ground.run_folder import MANIFEST_CSV, THUMBNAILS, VALIDATION_REPORT
from headstart.library.data.manifest import Manifest, build_manifest, save_thumbnails


@dataclass(frozen=True)
class Failure:
    """One failed check: which expectation, on what (a file, class or image), and why."""

    check: str
    subject: str
    reason: str
    severity: str = "error"  # error: the run stops | warning: named in the report, the run goes on


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating a dataset; ``success`` is False when any check failed."""

    root: str
    success: bool
    images: int
    valid_images: int
    classes: dict[str, int]
    failures: list[Failure] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The JSON report written beside the manifest."""
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


@dataclass(frozen=True)
class Check:
    """An expectation on one table and how to word each of its unexpected rows."""

    name: str
    table: str
    expectation: Any
    index_column: str | None
    reason: Callable[[dict], str]
    severity: str = "error"


def derived_tables(manifest: Manifest) -> dict[str, pd.DataFrame]:
    """The manifest plus the per-class, per-image and balance tables the suite needs."""
    table = manifest.table
    valid = table[table["error"].isna()]
    counts = valid["label"].value_counts()
    per_class = pd.DataFrame({"class": manifest.classes, "count": [int(counts.get(c, 0)) for c in manifest.classes]})
    hashed = table[table["sha256"].notna() & table["label"].notna()]
    per_image = (
        hashed.groupby("sha256")
        .agg(labels=("label", lambda s: sorted(set(s))), paths=("path", lambda s: ", ".join(sorted(s))))
        .reset_index()
    )
    per_image["n_labels"] = per_image["labels"].map(len)
    per_image["labels"] = per_image["labels"].map(", ".join)
    non_empty = per_class["count"][per_class["count"] > 0]
    ratio = float(non_empty.max() / non_empty.min()) if len(non_empty) else 0.0
    balance = pd.DataFrame({"scope": ["dataset"], "imbalance_ratio": [ratio]})
    return {"manifest": table, "per_class": per_class, "per_image": per_image, "balance": balance}


def build_checks(params: ValidateParams) -> list[Check]:
    """The suite, from params: each expectation with the message its failures get."""
    import great_expectations as gx

    e = gx.expectations
    sides = f"[{params.min_side}, {params.max_side}] (validate.min_side/max_side)"

    def side(column: str) -> Check:
        expectation = e.ExpectColumnValuesToBeBetween(
            column=column, min_value=params.min_side, max_value=params.max_side
        )
        return Check(column, "manifest", expectation, "path", lambda r: f"{column} {r[column]} outside {sides}")

    checks = [
        Check("readable image", "manifest", e.ExpectColumnValuesToBeNull(column="error"), "path", lambda r: r["error"]),
        Check(
            "allowed mode",
            "manifest",
            e.ExpectColumnValuesToBeInSet(column="mode", value_set=params.allowed_modes),
            "path",
            lambda r: f"mode {r['mode']} is not in validate.allowed_modes",
        ),
        side("width"),
        side("height"),
        Check(
            "images per class",
            "per_class",
            e.ExpectColumnValuesToBeBetween(column="count", min_value=params.min_per_class),
            "class",
            lambda r: f"{r['count']} valid image(s), fewer than validate.min_per_class={params.min_per_class}",
        ),
        Check(
            "one label per image",
            "per_image",
            e.ExpectColumnValuesToBeBetween(column="n_labels", max_value=1),
            "paths",
            lambda r: f"the same image (sha256) is filed under more than one class: {r['labels']}",
        ),
        Check(
            "class balance",
            "balance",
            e.ExpectColumnValuesToBeBetween(column="imbalance_ratio", max_value=params.max_imbalance_ratio),
            "scope",
            lambda r: (
                f"largest/smallest class = {r['imbalance_ratio']:.1f}, over "
                f"validate.max_imbalance_ratio={params.max_imbalance_ratio}"
            ),
        ),
    ]
    if params.expected_classes is not None:
        checks.append(
            Check(
                "expected classes",
                "per_class",
                e.ExpectColumnDistinctValuesToEqualSet(column="class", value_set=params.expected_classes),
                None,
                lambda r: f"class folders {r['observed']} differ from validate.expected_classes {r['expected']}",
            )
        )
    return checks


def run_suite(tables: dict[str, pd.DataFrame], checks: list[Check]) -> list[Failure]:
    """Validate each derived table with its GX suite; return every failure in words."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("headstart")
    failures: list[Failure] = []
    for table_name, table in tables.items():
        table_checks = [c for c in checks if c.table == table_name]
        if not table_checks or table.empty:
            continue
        batch = (
            source.add_dataframe_asset(table_name)
            .add_batch_definition_whole_dataframe("whole")
            .get_batch(batch_parameters={"dataframe": table})
        )
        suite = gx.ExpectationSuite(name=f"headstart-{table_name}", expectations=[c.expectation for c in table_checks])
        index_columns = sorted({c.index_column for c in table_checks if c.index_column})
        result = batch.validate(
            suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": index_columns}
        )
        for check, outcome in zip(table_checks, result.results, strict=True):
            if not outcome.success:
                failures.extend(_describe(check, outcome.result, table))
    return failures


def _describe(check: Check, result: dict, table: pd.DataFrame) -> list[Failure]:
    if check.index_column is None:
        observed = sorted(result.get("observed_value") or [])
        expected = sorted(check.expectation.value_set)
        reason = check.reason({"observed": observed, "expected": expected})
        return [Failure(check.name, "dataset", reason, check.severity)]
    failures = []
    for hit in result.get("unexpected_index_list") or []:
        subject = str(hit[check.index_column])
        row = table[table[check.index_column] == hit[check.index_column]].iloc[0].to_dict()
        failures.append(Failure(check.name, subject, check.reason(row), check.severity))
    return failures


def validate_manifest(manifest: Manifest, params: ValidateParams) -> ValidationReport:
    """Run the suite over a manifest and its derived tables."""
    tables = derived_tables(manifest)
    failures = run_suite(tables, build_checks(params))
    if manifest.table.empty:
        failures.insert(0, Failure("images found", str(manifest.root), "no image files in the dataset folder"))
    per_class = tables["per_class"]
    return ValidationReport(
        root=str(manifest.root),
        success=not failures,
        images=len(manifest.table),
        valid_images=int(manifest.table["error"].isna().sum()),
        classes=dict(zip(per_class["class"], per_class["count"].astype(int).tolist(), strict=True)),
        failures=failures,
        ignored=manifest.ignored,
    )


def save_report(report: ValidationReport, manifest: Manifest, out_dir: Path) -> tuple[Path, Path]:
    """Write the manifest (CSV) and the report (JSON) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path, report_path = out_dir / MANIFEST_CSV, out_dir / VALIDATION_REPORT
    manifest.table.to_csv(manifest_path, index=False)
    save_thumbnails(manifest.thumbnails, out_dir / THUMBNAILS)
    report_path.write_text(report.to_json())
    return manifest_path, report_path


def load_report(path: Path) -> ValidationReport:
    """A report written by :func:`save_report`."""
    data = json.loads(path.read_text())
    return ValidationReport(**{**data, "failures": [Failure(**f) for f in data["failures"]]})


def validate_dataset(root: Path, params: ValidateParams) -> tuple[Manifest, ValidationReport]:
    """Build the manifest (decoding every image) and run the suite over it."""
    manifest = build_manifest(root, params.max_pixels, params.workers, params.max_file_bytes)
    return manifest, validate_manifest(manifest, params)
