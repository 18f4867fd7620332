"""The structure's promises: one pipeline table behind the flow, `headstart step` and dvc.yaml; stage deps that
cover what each step imports; layers that only point down; one quiet environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.ground.environment import LOGGING_ENV, QUIET_ENV
from tasks.dvc_stages import render_dvc_yaml, stage_code_files
from tasks.pipeline import PIPELINE, get_step
from tests.support.forks import answers_in_forks

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_the_repository_dvc_yaml_is_the_rendered_table() -> None:
    assert (REPO / "dvc.yaml").read_text() == render_dvc_yaml(REPO), "re-render: python -m tasks.dvc_stages"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == [s.name for s in PIPELINE if s.in_dvc]
    assert all(stage["cmd"].startswith(f"headstart step {name} ") for name, stage in stages.items())


def test_the_order_is_the_run_lifecycle() -> None:
    names = [s.name for s in PIPELINE]
    assert names == [
        "validate",
        "split",
        "health",
        "train",
        "evaluate",
        "gate",
        "register",
        "report",
        "promote",
        "publish",
    ]
    promote = names.index("promote")
    assert all(s.best_effort == (i > promote) for i, s in enumerate(PIPELINE))  # nothing after it fails a run
    written = {entry for s in PIPELINE for entry in s.writes + s.metrics + s.plots}
    for step in PIPELINE:  # every input is some earlier step's output
        earlier = {e for s in PIPELINE[: names.index(step.name)] for e in s.writes + s.metrics + s.plots}
        assert set(step.reads) <= earlier | (written if step.best_effort else set()), step.name


# Each step module's project import closure, as a fresh `headstart step` would have it; the heavy third-party
# libraries are imported once, before the forks (no project module is).
PROJECT_FILES = """
__import__(name)
return sorted(m.__file__ for n, m in list(sys.modules.items())
              if n.split(".")[0] in ("headstart", "tasks", "flows") and getattr(m, "__file__", None))
"""


@pytest.fixture(scope="module")
def imports_per_step() -> dict[str, set[Path]]:
    """Each step module's project import closure, by module name."""
    modules = [step.module for step in PIPELINE]
    found = answers_in_forks(PROJECT_FILES, modules, REPO, preload="import numpy, pandas, sklearn, timm, torch")
    return {name: {Path(f).resolve() for f in files} for name, files in found.items()}


@pytest.mark.parametrize("step", PIPELINE, ids=lambda s: s.name)
def test_stage_code_deps_cover_what_the_step_imports(step, imports_per_step) -> None:
    imported = imports_per_step[step.module]
    assert any(path.name == "step.py" for path in imported)  # the closure was really taken
    assert imported <= set(step.code_files()) <= set(stage_code_files(step))
    for entry in step.reads:  # `headstart step` reads upstream results back with their producers' load
        producer = next(s for s in PIPELINE if entry in (*s.writes, *s.metrics, *s.plots))
        assert set(producer.code_files()) <= set(stage_code_files(step))


def test_the_training_loop_is_a_dependency_of_train_only_among_the_early_stages() -> None:
    loop = REPO / "headstart/library/training/epochs.py"
    assert loop in stage_code_files(get_step("train"))
    assert loop not in stage_code_files(get_step("validate")) and loop not in stage_code_files(get_step("split"))


def test_unknown_step_names_the_steps(tmp_path: Path) -> None:
    result = runner.invoke(app, ["step", "trian", "--out", str(tmp_path)])
    said = " ".join(result.output.replace("│", " ").split())  # rich draws the error in a box
    assert result.exit_code == 2 and "no step 'trian'; the steps are validate, split, health, train" in said
    assert not any(tmp_path.iterdir())


def test_layers_only_point_down() -> None:
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports")], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "3 kept, 0 broken" in done.stdout  # layers, library layers, no sibling cycles


def test_prefect_job_and_worker_image_environments_are_the_quiet_environment() -> None:
    job_env = yaml.safe_load((REPO / "prefect.yaml").read_text())["definitions"]["job_env"]["env"]
    assert job_env == {**QUIET_ENV, **LOGGING_ENV}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert all(f"{key}={value}" in dockerfile for key, value in QUIET_ENV.items())
