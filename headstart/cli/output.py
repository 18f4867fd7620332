"""Rendering shared by the CLI commands: the validation report and the gate decision."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from headstart.ground.run_folder import MANIFEST_CSV, VALIDATION_REPORT


def text_console(stderr: bool = False) -> Console:
    """A console that prints strings as they are: no rich markup, no emoji codes. Names, reasons, paths and error
    messages hold user text (`[/x]` raised MarkupError, `[link=...]` became a link); colour comes from ``style``
    and :class:`rich.text.Text` parts, never from markup inside a string."""
    return Console(stderr=stderr, markup=False, emoji=False)


console = text_console()


def print_report(report, out: Path) -> None:
    """The validation outcome: a table naming every failing file, class or image."""
    status = ("PASSED", "green") if report.success else ("FAILED", "red")
    usable = f" — {report.valid_images}/{report.images} images usable, {len(report.classes)} classes"
    console.print(Text.assemble(f"{report.root}: ", status, usable))
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
        table.add_row(rule["rule"], rule["value"], rule["threshold"], Text(rule["verdict"], colour[rule["verdict"]]))
    console.print(table)
    console.print(Text.assemble("decision: ", (decision["verdict"], colour[decision["verdict"]])))
