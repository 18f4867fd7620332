"""The health report: near duplicates, suspected label errors and drift, judged by a Great Expectations suite over
tables derived from them (the validation report's form, so a data person reads one kind of report).

Failures with severity ``error`` stop the run (too many suspected label errors); ``warning`` names a finding and
lets the run go on (a near duplicate filed under two classes, leaks kept by ``health.leakage=warn``, drift).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from headstart.ground.params import HealthParams
from headstart.library.data.leakage import DuplicateReport
from headstart.library.data.validation import Check, Failure, run_suite


@dataclass(frozen=True)
class HealthReport:
    """What the health step found; ``success`` is False when an ``error`` check failed."""

    success: bool
    near_duplicates: dict  # counts: leaks, dropped, kept, within_class, across_classes
    label_issues: dict | None  # checked, fraction, issues [{file, label, suggested, label_quality}]
    drift: dict | None  # DriftReport fields, or {"skipped": why}
    failures: list[Failure] = field(default_factory=list)
    warnings: list[Failure] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-friendly form (``health.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HealthReport:
        """Inverse of :meth:`to_dict`."""
        failures = [Failure(**f) for f in data.get("failures", [])]
        warnings = [Failure(**f) for f in data.get("warnings", [])]
        return cls(**{**data, "failures": failures, "warnings": warnings})

    def summary(self) -> dict:
        """The figures a run summary and an event carry."""
        drift = self.drift or {}
        return {
            "leaks": self.near_duplicates.get("leaks", 0),
            "leaks_dropped": self.near_duplicates.get("dropped", 0),
            "cross_class_duplicates": self.near_duplicates.get("across_classes", 0),
            "label_issue_fraction": (self.label_issues or {}).get("fraction"),
            "drift_mmd2": drift.get("mmd2"),
            "drift_p_value": drift.get("p_value"),
        }


def derived_tables(duplicates: DuplicateReport | None, label_issues: dict | None, drift: dict | None) -> dict:
    """One-row ``health`` figures; near-duplicate pairs across classes; leaks with what was done about them."""
    duplicates = duplicates or DuplicateReport("drop")
    figures = {
        "scope": "training data",
        "label_issue_fraction": (label_issues or {}).get("fraction", 0.0),
        "drift_p_value": (drift or {}).get("p_value", 1.0),  # a skipped drift ({"skipped": why}) passes
        "drift_mmd2": (drift or {}).get("mmd2", 0.0),
    }
    across = pd.DataFrame(
        duplicates.across_classes, columns=["file", "label", "other_file", "other_label", "similarity"]
    )
    dropped = set(duplicates.dropped)
    leaks = pd.DataFrame(
        [{**leak, "action": "dropped" if leak["file"] in dropped else "kept"} for leak in duplicates.leaks],
        columns=["file", "split", "label", "test_file", "test_label", "similarity", "action"],
    )
    return {"health": pd.DataFrame([figures]), "across_classes": across, "leaks": leaks}


def build_checks(params: HealthParams) -> list[Check]:
    """The health suite, from params."""
    import great_expectations as gx

    e = gx.expectations
    checks = [
        Check(
            "one label per near-duplicate pair",
            "across_classes",
            e.ExpectColumnPairValuesToBeEqual(column_A="label", column_B="other_label"),
            "file",
            lambda r: (
                f"filed under {r['label']}, but a near duplicate (similarity {r['similarity']}) of "
                f"{r['other_file']} filed under {r['other_label']}: one of the two labels is likely wrong"
            ),
            "warning",
        ),
        Check(
            "no near duplicate of a test image in training",
            "leaks",
            e.ExpectColumnValuesToBeInSet(column="action", value_set=["dropped"]),
            "file",
            lambda r: f"near duplicate of test image {r['test_file']} ({r['similarity']}), kept (health.leakage=warn)",
            "warning",
        ),
        Check(
            "no drift from the champion's training data",
            "health",
            e.ExpectColumnValuesToBeBetween(column="drift_p_value", min_value=params.drift_alpha),
            "scope",
            lambda r: (
                f"features moved from the champion's training data: MMD² {r['drift_mmd2']:.4g}, "
                f"p={r['drift_p_value']:.3g} < health.drift_alpha={params.drift_alpha}"
            ),
            "warning",
        ),
    ]
    if params.max_label_issue_fraction is not None:
        limit = params.max_label_issue_fraction
        checks.append(
            Check(
                "share of suspected label errors",
                "health",
                e.ExpectColumnValuesToBeBetween(column="label_issue_fraction", max_value=limit),
                "scope",
                lambda r: (
                    f"{r['label_issue_fraction']:.1%} of the images look mislabeled, over "
                    f"health.max_label_issue_fraction={limit} (see health.json for each file and the suggested class)"
                ),
            )
        )
    return checks


def judge(
    params: HealthParams, duplicates: DuplicateReport | None, label_issues: dict | None, drift: dict | None
) -> HealthReport:
    """Run the suite over the derived tables and assemble the report."""
    found = run_suite(derived_tables(duplicates, label_issues, drift), build_checks(params))
    duplicates = duplicates or DuplicateReport(params.leakage)
    counts = {
        "leaks": len(duplicates.leaks),
        "dropped": len(duplicates.dropped),
        "kept": len(duplicates.leaks) - len(duplicates.dropped) if duplicates.policy != "drop" else 0,
        "within_class": sum(duplicates.within_class.values()),
        "across_classes": len(duplicates.across_classes),
    }
    failures = [f for f in found if f.severity == "error"]
    warnings = [f for f in found if f.severity != "error"]
    return HealthReport(not failures, counts, label_issues, drift, failures, warnings)


def save(report: HealthReport, path: Path) -> None:
    """Write ``health.json`` (NaN-free: figures that do not exist are null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(report.to_dict()), indent=2, ensure_ascii=False))


def load(path: Path) -> HealthReport:
    """``health.json`` as written."""
    return HealthReport.from_dict(json.loads(path.read_text()))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
