"""From imported Fashion-MNIST to a fine-tuned, evaluated model: through the Prefect flow and through dvc repro."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.library.data.versioning import read_dvc_md5

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def import_data(per_class: int, test_per_class: int) -> None:
    result = runner.invoke(
        app,
        [
            "data",
            "import",
            "fashion-mnist",
            "--per-class",
            str(per_class),
            "--test-per-class",
            str(test_per_class),
        ],
    )
    assert result.exit_code == 0, result.output


def test_flow_fine_tunes_far_above_chance(workspace: Path, prefect_server, fashion_idx_dir) -> None:
    import_data(per_class=30, test_per_class=20)
    result = runner.invoke(
        app,
        [
            "run",
            "--set",
            "train.scenario=finetune",
            "--set",
            "train.epochs=3",
            "--set",
            "train.num_workers=0",
            "--run-dir",
            "runs/e2e",
            "--summary-json",
            "summary.json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((workspace / "summary.json").read_text())
    assert summary["metrics"]["test_images"] == 200
    assert summary["metrics"]["accuracy"] > 0.5, summary["metrics"]  # chance is 0.1
    assert summary["data_md5"] == read_dvc_md5(workspace / "data" / "fashion-mnist.dvc")
    assert summary["test_data_md5"] == read_dvc_md5(workspace / "data" / "fashion-mnist-test.dvc")
    assert summary["scenario"] == "finetune" and summary["split"]["test"] == 200
    lineage = json.loads((workspace / "runs/e2e/model/config.json").read_text())["lineage"]
    assert lineage["flow_run_id"] == summary["run_id"] != "local"
    assert len(lineage["params_sha256"]) == 64 and lineage["packages"]["timm"]
    assert (workspace / "runs/e2e/metrics.json").is_file() and (workspace / "runs/e2e/validate/manifest.csv").is_file()


def test_flow_runs_the_features_scenario(workspace: Path, prefect_server, fashion_idx_dir, tmp_path: Path) -> None:
    import_data(per_class=10, test_per_class=5)
    sets = ["train.scenario=features", "train.classifier=logreg", f"train.feature_cache={tmp_path / 'fc'}"]
    args = ["run", *[a for s in sets for a in ("--set", s)], "--run-dir", "runs/features", "--summary-json", "s.json"]
    for expected_hit in (False, True):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        summary = json.loads((workspace / "s.json").read_text())
        assert summary["scenario"] == "features" and summary["features_from_cache"] is expected_hit
    assert summary["metrics"]["accuracy"] > 0.4, summary["metrics"]
    assert (workspace / "runs/features/model/classifier.skops").is_file()


def test_flow_stops_on_invalid_data(workspace: Path, prefect_server, fashion_idx_dir) -> None:
    import_data(per_class=3, test_per_class=2)
    (workspace / "data" / "fashion-mnist" / "bag" / "broken.png").write_bytes(b"not a png")
    result = subprocess.run(["headstart", "run", "--run-dir", "runs/bad"], capture_output=True, text=True)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "retrain run failed" in message and "bag/broken.png: not an image" in message
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads((workspace / "runs/bad/validate/validation.json").read_text())
    assert [f["subject"] for f in report["failures"]] == ["bag/broken.png"]
    assert not (workspace / "runs/bad/model").exists()


def test_dvc_repro_then_no_op(workspace: Path, fashion_idx_dir) -> None:
    import_data(per_class=8, test_per_class=2)
    for name in ("dvc.yaml", "tasks"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workspace / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, workspace / name)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"].update(epochs=1, num_workers=0)
    params["model"]["input_size"] = 32
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    first = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in ("validate", "split", "train", "evaluate", "gate", "promote"):
        assert f"Running stage '{stage}'" in first.stdout
    metrics = json.loads((workspace / "runs/dvc/metrics.json").read_text())
    assert metrics["test_images"] == 20
    registered = json.loads((workspace / "runs/dvc/registered.json").read_text())
    decision = json.loads((workspace / "runs/dvc/decision.json").read_text())
    assert registered["promoted"] == (decision["verdict"] == "PASS")
    assert (workspace / "registry/fashion-mnist/versions" / registered["version"] / "MANIFEST.json").is_file()

    second = subprocess.run(["dvc", "repro"], cwd=workspace, capture_output=True, text=True)
    assert second.returncode == 0 and "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout

    shown = subprocess.run(["dvc", "metrics", "show", "--json"], cwd=workspace, capture_output=True, text=True)
    assert '"accuracy"' in shown.stdout
