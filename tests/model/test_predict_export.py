"""Using a registered model: `headstart predict` for every scenario, and ONNX export checked against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from headstart.cli.main import app
from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.split import SplitResult
from tasks.pipeline import get_step, steps_by_name
from tasks.step import StepContext

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def registered(tiny_split, tmp_path_factory):
    """A local registry holding one features-scenario and one finetune-scenario version (each through the train,
    evaluate, gate and register steps), plus params naming it."""
    _, split = tiny_split(6, 2, 4)
    root = tmp_path_factory.mktemp("predict")
    versions = {}
    for scenario in ("features", "finetune"):
        overrides = [
            "train.num_workers=0",
            "model.input_size=32",
            "train.epochs=1",
            f"train.scenario={scenario}",
            f"train.feature_cache={root / 'fc'}",
            "gate.floors={}",
            f"registry.uri=file://{root / 'registry'}",
            "registry.model_name=tiny",
        ]
        ctx = StepContext(load_params(REPO_PARAMS, overrides), RunFolder(root / scenario), steps_by_name())
        ctx.results["split"] = SplitResult(split, 0)
        for name in ("health", "train", "evaluate", "gate", "register"):
            ctx.results[name] = get_step(name).run(ctx)
        versions[scenario] = ctx.results["register"]
    (root / "params.yaml").write_text(json.dumps(ctx.params.as_dict()))  # JSON is YAML
    images = sorted(split.loc[split["split"] == "test", "file"])[:4]
    return root, versions, [Path(p) for p in images]


def own_predictions(model_dir: Path, images: list[Path]) -> list[tuple[str, float]]:
    """Class and probability per image the way evaluation scores them: the split loader and the predictor."""
    import pandas as pd

    from headstart.library.data.loader import ImageTable, make_loader
    from headstart.library.data.transforms import build_transform
    from headstart.library.evaluation.metrics import predict_loader
    from headstart.library.models.saved_model import load_predictor

    predictor = load_predictor(model_dir)
    classes = predictor.config.classes
    table = pd.DataFrame({"file": [str(p) for p in images], "label": classes[0]})
    loader = make_loader(ImageTable(table, classes, build_transform(predictor.config.pre)), 8, False, 0)
    pred = predict_loader(predictor, loader)
    return [(classes[i], float(pred.probabilities[n, i])) for n, i in enumerate(pred.y_pred)]


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
    assert [line["image"] for line in lines] == [str(p) for p in images]
    expected = own_predictions(root / scenario / "model", images)  # the run's own model, scored as evaluate does
    assert [line["label"] for line in lines] == [label for label, _ in expected]
    assert [line["probability"] for line in lines] == pytest.approx([p for _, p in expected], abs=1e-3)
    assert {line["version"] for line in lines} == {versions[scenario]}


def test_export_onnx_matches_torch_with_a_dynamic_batch(registered, monkeypatch, tmp_path: Path) -> None:
    import onnxruntime
    import torch

    from headstart.library.models.saved_model import load_predictor

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
    assert refused.exit_code != 0 and "only onnx" in refused.output


def test_an_export_that_does_not_match_torch_leaves_nothing(registered, monkeypatch, tmp_path: Path) -> None:
    root, versions, _ = registered
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    dest = tmp_path / "out" / "model.onnx"
    dest.parent.mkdir()
    dest.write_bytes(b"the previous export")
    args = ["export", versions["finetune"], str(dest), "--tolerance", "0", "--params", str(root / "params.yaml")]
    result = runner.invoke(app, args)  # no float32 export matches torch to 0: the check fails

    assert result.exit_code == 1 and "nothing written" in result.output  # a failed check: exit 1
    assert dest.read_bytes() == b"the previous export" and [p.name for p in dest.parent.iterdir()] == [dest.name]
