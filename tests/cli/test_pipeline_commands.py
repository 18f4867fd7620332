"""`headstart run`, `sweep`, `step` and `reproduce`: what each refuses before any flow starts or anything is
written (exit 2, naming the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import at, invoke, unboxed

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_run_refuses_a_malformed_override_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    code, output = invoke("run", "--set", "train.epochs")
    assert code == 2 and "`headstart run --set train.epochs=3`" in output
    assert not (tmp_path / "runs").exists()


def test_step_names_the_steps_when_given_another(tmp_path: Path) -> None:
    code, output = invoke("step", "trainn", "--out", str(tmp_path / "run"))
    assert code == 2 and "validate" in output and "train" in output
    code, output = invoke("step", "publish", "--out", str(tmp_path / "run"))
    assert code == 2 and "runs only inside the Prefect flow (headstart run)" in unboxed(output)
    assert not (tmp_path / "run").exists()


def test_sweep_refuses_an_unreadable_file_and_a_bad_cluster(tmp_path: Path) -> None:
    code, output = invoke("sweep", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml: cannot read the sweep file" in output
    (tmp_path / "sweep.yaml").write_text("grid: {train.lr: [0.001, 0.002]}\n")
    code, output = invoke("sweep", str(tmp_path / "sweep.yaml"), "--cluster", "yarn://x")
    assert code == 2 and "--cluster local:2" in output
    assert not (tmp_path / "runs").exists()


def test_reproduce_an_unknown_version_is_refused_naming_the_listing(registry) -> None:
    opened, _ = registry
    code, output = invoke("reproduce", "20990101T000000Z-nope", *at(opened))
    assert code == 2 and "`headstart registry ls`" in output
