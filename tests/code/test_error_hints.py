"""The error catalogue: every message an error is raised with, read from the source. A fix it suggests names a
`headstart` command that exists, with options that command takes; code that also runs from a schedule or a data
trigger (the library, the steps, the flows) never suggests a bare `--flag`, which no one typed there."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from headstart.cli.main import app

REPO = Path(__file__).resolve().parents[2]
SOURCES = [*REPO.glob("headstart/**/*.py"), *REPO.glob("flows/*.py"), *REPO.glob("tasks/*.py")]
CLI = REPO / "headstart" / "cli"
COMMAND = re.compile(r"\bheadstart((?: [a-z][a-z0-9-]*)+)((?: [^\s`]+)*)")  # its words, then its arguments
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
ERROR_CALLS = re.compile(r"(Error|Failed|Mismatch|Conflict|Manifest|BadParameter|Exit|NotReproduced)$")


def message_text(node: ast.expr) -> str:
    """A message's literal text; each interpolated value reads X."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(message_text(v) if isinstance(v, ast.Constant) else "X" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return message_text(node.left) + message_text(node.right)
    return ""


def catalogue() -> list[tuple[str, int, str]]:
    """(file, line, message) for every error constructed with a message in the product's source."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if ERROR_CALLS.search(name) and (text := message_text(node.args[0])):
                found.append((str(path.relative_to(REPO)), node.lineno, text))
    return found


ROOT = typer.main.get_command(app)  # typer's own (vendored) click objects: groups are told by their commands


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command a suggestion names (as deep as its words go) and the words left over (its arguments)."""
    command = ROOT
    while words and words[0] in getattr(command, "commands", {}):
        command, words = command.commands[words[0]], words[1:]
    return command, words


def options_of(command: Any) -> set[str]:
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}


def problems_in(message: str, in_cli: bool) -> list[str]:
    problems, named_spans = [], []
    for match in COMMAND.finditer(message):
        words, rest = match.group(1).split(), match.group(2)
        command, leftover = resolve(words)
        if command is ROOT:
            problems.append(f"`headstart {words[0]}` is not a command")
            continue
        if hasattr(command, "commands") and leftover:
            problems.append(f"`headstart {' '.join(words)}`: {leftover[0]!r} is not a subcommand")
        for flag in FLAG.findall(rest):
            if flag not in options_of(command):
                problems.append(f"`headstart {' '.join(words)}` takes no {flag}")
        named_spans.append(match.span())
    if not in_cli:  # a run from a schedule or trigger: a bare flag names no command anyone could type
        for flag in FLAG.finditer(message):
            if not any(start <= flag.start() < end for start, end in named_spans):
                problems.append(f"{flag.group()} without the headstart command it belongs to")
    return problems


def test_the_catalogue_is_read_from_the_source() -> None:
    messages = catalogue()
    assert len(messages) > 150  # the walk finds the product's errors, not a handful
    assert any("the fixed test set (data.test_dir in params.yaml) was not found" in m for _, _, m in messages)


def test_every_suggested_command_exists_with_its_options() -> None:
    found = {
        f"{file}:{line}: {problem}  [{message}]"
        for file, line, message in catalogue()
        for problem in problems_in(message, in_cli=Path(REPO / file).is_relative_to(CLI))
    }
    assert not found, "\n".join(sorted(found))


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("run `headstart regsitry ls`", "`headstart regsitry` is not a command"),
        ("pass `headstart registry promote X --forse`", "`headstart registry promote` takes no --forse"),
        ("the test set is missing; pass --test-data DIR", "--test-data without the headstart command"),
        ("see `headstart registry lss`", "'lss' is not a subcommand"),
    ],
)
def test_the_check_catches_a_wrong_suggestion(message: str, problem: str) -> None:
    assert any(problem in found for found in problems_in(message, in_cli=False))


def test_right_suggestions_pass() -> None:
    for message in (
        "promote it with `headstart registry promote X --force`",
        "set data.test_dir in params.yaml (for one run: `headstart run --test-data DIR`)",
        "import it again with `headstart data import folder SRC --name X --replace`",
    ):
        assert problems_in(message, in_cli=False) == [], message
