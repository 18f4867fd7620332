"""The CLI's command groups, one test module each: how a command calls its flow or library function, its exit
status (0 done, 1 a check failed, 2 refused or could not run) and its --json. Fast: no server, no training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from headstart.library.evaluation.gate import Decision, RuleResult
from headstart.library.registry.registry import Registry, open_registry

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    """`headstart ARGS` as a terminal runs it: the exit status and what it printed (stdout and stderr)."""
    from headstart.cli.main import app

    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def unboxed(output: str) -> str:
    """Printed text as one line, without the box and the wrapping a usage error comes in."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", output).split())


def decision(verdict: str) -> bytes:
    rule = RuleResult("floor accuracy", "0.8000", ">= 0.5", verdict)
    return json.dumps(Decision(verdict, [rule]).to_dict()).encode()  # type: ignore[arg-type]


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Registry, list[str]]:
    """A file registry of the shipped model holding a PASS and a FAIL version (registered, not trained)."""
    from headstart.ground.params import RegistryParams

    opened = open_registry(RegistryParams(uri=f"file://{tmp_path / 'registry'}"))
    versions = [
        opened.register(
            {"model.safetensors": weights, "decision.json": decision(verdict)},
            {"decision": verdict, "metrics": {"accuracy": accuracy, "macro_f1": accuracy}, "data_md5": "d" * 32},
        )
        for weights, verdict, accuracy in ((b"one", "PASS", 0.8), (b"two", "FAIL", 0.6))
    ]
    return opened, versions


def at(registry: Registry) -> list[str]:
    """The ``--set`` that points a command at ``registry``."""
    return ["--set", f"registry.uri={registry.storage.uri}"]
