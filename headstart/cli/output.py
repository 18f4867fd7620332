"""Rendering shared by the CLI commands: the validation report and the gate decision."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from headstart.ground.run_folder import MANIFEST_CSV, VALIDATION_REPORT

console = Console()


def print_report(report, out: Path) -> None:
    """The validation outcome: a table naming every failing file, class or image."""
    status = "[green]PASSED[/]" if report.success else "[red]FAILED[/]"
    console.print(
        f"{report.root}: {status} — {report.valid_images}/{report.images} images usable, {len(report.classes)} classes"
    )
    if report.failures:
        table = Table("check", "file / class / image", "reason", show_lines=False)
        for failure in report.failures:
            table.add_row(failure.check, failure.subject, failure.reason)
        console.print(table)
    if report.ignored:
        console.print(f"skipped hidden: {', '.join(report.ignored)}")
    console.print(f"manifest and report: {out / MANIFEST_CSV}, {out / VALIDATION_REPORT}")


def print_decision(decision: dict) -> None:
    """The gate decision: every rule with value, threshold and verdict."""
    colour = {"PASS": "green", "FAIL": "red", "INFO": "dim"}
    against = decision["champion"] or "no champion (first model)"
    table = Table("rule", "value", "threshold", "verdict", title=f"gate decision vs {against}")
    for rule in decision["rules"]:
        table.add_row(
            rule["rule"], rule["value"], rule["threshold"], f"[{colour[rule['verdict']]}]{rule['verdict']}[/]"
        )
    console.print(table)
    console.print(f"decision: [{colour[decision['verdict']]}]{decision['verdict']}[/]")
