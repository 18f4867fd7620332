"""Fine-tuning on tiny data: frozen stages stay fixed, the saved model reloads to the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.split import load_split
from headstart.library.evaluation.metrics import evaluate, load_evaluation, save_evaluation
from headstart.library.models.saved_model import load_predictor
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.fixture(scope="module")
def trained(tiny_split):
    base, split = tiny_split(6, 2, 0)
    params = load_params(
        REPO_PARAMS,
        [
            "train.epochs=2",
            "train.num_workers=0",
            "model.input_size=32",
            "train.bn=frozen",
            "train.freeze_stages=2",
            "train.scenario=finetune",
        ],
    )
    result = train(split, params, RunFolder(base / "run"), {"data_md5": "test"})
    return base, result


def test_artifacts_and_frozen_stem(trained) -> None:
    base, result = trained
    run = base / "run"
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["classes"][0] == "ankle_boot" and len(config["classes"]) == 10
    assert config["preprocessing"] == {
        "input_size": 32,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "interpolation": "bicubic",
    }
    assert config["lineage"]["data_md5"] == "test"  # the caller's record, and where and how it trained
    assert config["lineage"]["environment"]["device"] == "cpu" and config["lineage"]["environment"]["world_size"] == 1
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert (run / "curves.csv").read_text().startswith("epoch,train_loss,lr")
    from headstart.library.training.checkpoints import STATE, WEIGHTS, latest_folder

    published = latest_folder(run / "checkpoints")
    assert published.name.startswith("epoch-0002-") and (published / WEIGHTS).is_file()
    assert [p for p in (run / "checkpoints").iterdir() if p.is_dir()] == [published]  # older ones removed
    state = torch.load(published / STATE, weights_only=True)
    assert state["epoch"] == 2 and "optimizer" in state

    from headstart.library.models.backbones import create_pretrained

    pretrained = create_pretrained("tf_efficientnet_lite0", "package:efficientnet-lite0").state_dict()
    weights = load_file(result.model_dir / "model.safetensors")
    assert torch.equal(weights["conv_stem.weight"], pretrained["conv_stem.weight"])  # frozen stage untouched
    assert torch.equal(weights["bn1.running_mean"], pretrained["bn1.running_mean"])  # bn=frozen
    assert not torch.equal(weights["conv_head.weight"], pretrained["conv_head.weight"])  # trained stage moved


def test_reload_and_evaluate(trained) -> None:
    base, result = trained
    predictor = load_predictor(result.model_dir)
    weights = load_file(result.model_dir / "model.safetensors")
    assert torch.equal(predictor.network.state_dict()["classifier.weight"], weights["classifier.weight"])
    proba = predictor.predict_proba(torch.randn(3, 3, 32, 32))
    assert proba.shape == (3, 10) and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    evaluation = evaluate(result.model_dir, load_split(base / "split.csv"))
    save_evaluation(evaluation, RunFolder(base / "eval"))
    metrics = evaluation.metrics
    assert metrics["test_images"] == 20
    assert sum(c["support"] for c in metrics["per_class"].values()) == 20
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    cm = metrics["confusion_matrix"]
    assert metrics["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(10)) / 20)
    confusion = (base / "eval" / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 21
    saved = load_evaluation(RunFolder(base / "eval"))
    assert saved.metrics == json.loads(json.dumps(metrics)) and saved.correct == evaluation.correct
