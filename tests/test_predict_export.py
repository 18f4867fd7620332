"""Using a registered model: `headstart predict` for every scenario, and ONNX export checked against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from headstart.cli import app
from headstart.config import GateParams, load_params
from tasks.evaluate import evaluate_model
from tasks.promote import judge, register_run
from tasks.registry import Registry
from tasks.storage import LocalStorage
from tasks.train import train

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def registered(tiny_split, tmp_path_factory):
    """A local registry holding one features-scenario and one finetune-scenario version, plus params naming it."""
    base, split = tiny_split(6, 2, 4)
    root = tmp_path_factory.mktemp("predict")
    registry = Registry(LocalStorage(root / "registry"), "tiny")
    versions = {}
    for scenario in ("features", "finetune"):
        overrides = [
            "train.num_workers=0",
            "model.input_size=32",
            "train.epochs=1",
            f"train.scenario={scenario}",
            f"train.feature_cache={root / 'fc'}",
        ]
        out = root / scenario
        train(split, load_params(REPO_PARAMS, overrides), out, {})
        evaluate_model(out / "model", base / "split.csv", out)
        judge(out, base / "split.csv", GateParams(floors={}), registry, 64, False)
        versions[scenario] = register_run(registry, out)
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["registry"] = {"uri": f"file://{root / 'registry'}", "model_name": "tiny"}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    images = sorted(split.loc[split["split"] == "test", "file"])[:4]
    return root, versions, [Path(p) for p in images]


@pytest.mark.parametrize("scenario", ["features", "finetune"])
def test_predict_every_scenario(registered, scenario: str, monkeypatch, tmp_path: Path) -> None:
    root, versions, images = registered
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(
        app,
        ["predict", *map(str, images), "--model", versions[scenario], "--json", "--params", str(root / "params.yaml")],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # stderr may carry stale log handlers
    classes = json.loads((root / scenario / "model" / "config.json").read_text())["classes"]
    assert [line["image"] for line in lines] == [str(p) for p in images]
    assert all(line["label"] in classes and 0 < line["probability"] <= 1 for line in lines)
    assert {line["version"] for line in lines} == {versions[scenario]}


def test_export_onnx_matches_torch_with_a_dynamic_batch(registered, monkeypatch, tmp_path: Path) -> None:
    import onnxruntime
    import torch

    from tasks.model_io import load_predictor

    root, versions, _ = registered
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "model.onnx"
    result = runner.invoke(
        app, ["export", versions["finetune"], str(dest), "--format", "onnx", "--params", str(root / "params.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "onnxruntime matches torch" in " ".join(result.output.split())  # rich wraps long paths
    predictor = load_predictor(root / "finetune" / "model")
    session = onnxruntime.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = torch.randn(batch, 3, 32, 32)
        onnx_out = session.run(None, {"images": x.numpy()})[0]
        np.testing.assert_allclose(onnx_out, predictor.network(x).detach().numpy(), atol=1e-4)
    refused = runner.invoke(
        app, ["export", versions["finetune"], str(dest), "--format", "tflite", "--params", str(root / "params.yaml")]
    )
    assert refused.exit_code != 0 and "only onnx" in str(refused.exception)
