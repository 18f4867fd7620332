"""Commands that train nothing import nothing heavy: params, the registry, the table of steps and the steps that
only move records are read without torch, timm, albumentations, scikit-learn, matplotlib or Great Expectations.

Each check runs in a fresh interpreter (this test session has imported everything already)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.pipeline import PIPELINE
from tests.support.forks import answers_in_forks

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "timm", "albumentations", "sklearn", "matplotlib", "great_expectations")

# Loads the repository's params, registers a version in a file registry, then runs the CLI's registry and
# listing commands in this same interpreter; prints the heavy libraries found in sys.modules.
PARAMS_AND_REGISTRY = """
import json, sys
from pathlib import Path
from typer.testing import CliRunner
from headstart.cli.main import app
from headstart.ground.params import load_params
from headstart.library.registry.registry import open_registry

params = load_params(sys.argv[1])
registry = open_registry(params.registry.model_copy(update={"uri": f"file://{sys.argv[2]}"}))
version = registry.register({"model.safetensors": b"w", "config.json": b"{}"}, {"decision": "PASS"})
listed = [m["version"] for m in registry.versions()]
runs = [CliRunner().invoke(app, args) for args in (
    ["registry", "ls", "--json", "--set", f"registry.uri=file://{sys.argv[2]}"],
    ["backbones", "--json"],
    ["--help"],
)]
heavy = sorted(name for name in sys.argv[3:] if name in sys.modules)
print(json.dumps({"listed": listed, "version": version, "codes": [r.exit_code for r in runs],
                  "ls": runs[0].output, "heavy": heavy}))
"""


def test_params_and_the_registry_load_nothing_heavy(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PARAMS_AND_REGISTRY, str(REPO / "params.yaml"), str(tmp_path / "registry"), *HEAVY],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["listed"] == [found["version"]]  # the registry was really read
    assert found["codes"] == [0, 0, 0] and found["version"] in found["ls"]  # the CLI listed it too
    assert found["heavy"] == [], f"imported without need: {found['heavy']}"


# Resolving the step's function (as `headstart step NAME` does) imports its module and what that imports; the
# answer names the heavy libraries and the pipeline's step modules it pulled in.
STEP_CLOSURE = f"""
from tasks.pipeline import PIPELINE, get_step
get_step(name).run
steps = {{f"tasks.{{s.name}}" for s in PIPELINE}}
return {{"heavy": [h for h in {HEAVY!r} if h in sys.modules], "steps": sorted(steps & set(sys.modules))}}
"""

# What each step itself needs; every other heavy library must stay out of its process.
NEEDS = {
    "validate": set(),  # Great Expectations loads when the suite runs, not at import
    "split": set(),
    "health": {"torch", "timm", "albumentations", "sklearn"},
    "train": {"torch", "timm", "albumentations", "sklearn"},
    "evaluate": {"torch", "timm", "albumentations", "sklearn"},
    "gate": set(),  # torch only when a champion is there to score
    "register": set(),
    "report": {"matplotlib"},
    "promote": set(),
    "publish": {"matplotlib"},
}


@pytest.fixture(scope="module")
def step_closures() -> dict[str, dict]:
    return answers_in_forks(STEP_CLOSURE, [step.name for step in LIGHT_STEPS], REPO)


# The steps that run without torch (those that need it import it anyway: not worth three torch imports here).
LIGHT_STEPS = [step for step in PIPELINE if "torch" not in NEEDS[step.name]]


@pytest.mark.parametrize("step", LIGHT_STEPS, ids=lambda s: s.name)
def test_a_step_imports_only_what_it_uses(step, step_closures) -> None:
    found = step_closures[step.name]
    assert set(found["heavy"]) <= NEEDS[step.name], f"{step.name} imports {set(found['heavy']) - NEEDS[step.name]}"
    assert f"tasks.{step.name}" in found["steps"]  # the step's own module was really imported


def test_the_table_is_read_without_importing_any_step() -> None:
    names = ",".join(f"tasks.{step.name}" for step in PIPELINE)
    code = (
        "import sys; from tasks.dvc_stages import render_dvc_yaml; from pathlib import Path; "
        f"render_dvc_yaml(Path('.')); print([m for m in {names.split(',')!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]"
