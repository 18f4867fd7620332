"""The three scenarios train on tiny Fashion-MNIST, share the feature store, and save one kind of model folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
import torch
from safetensors.torch import load_file
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from headstart.ground.errors import WeightsError
from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.evaluation.metrics import evaluate
from headstart.library.models.backbones import freeze
from headstart.library.models.classical import load_classifier
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


@pytest.fixture(scope="module")
def data(tiny_split):
    return tiny_split(12, 5, 1)


def params(base: Path, *overrides: str):
    common = ["train.num_workers=0", "model.input_size=32", "model.features_input_size=32", "train.epochs=1",
              f"train.feature_cache={base / 'fc'}"]  # fmt: skip
    return load_params(REPO_PARAMS, [*common, *overrides])


@pytest.mark.parametrize("classifier", ["logreg", "linear_svm", "rbf_svm", "random_forest"])
def test_features_scenario_with_each_classifier(data, classifier: str) -> None:
    base, split = data
    out = base / f"features-{classifier}"
    result = train(split, params(base, "train.scenario=features", f"train.classifier={classifier}"), RunFolder(out), {})
    assert sorted(p.name for p in result.model_dir.iterdir()) == [
        "classifier.skops",
        "config.json",
        "model.safetensors",
    ]
    assert load_classifier(result.model_dir).predict_proba(np.zeros((1, 1280), np.float32)).shape == (1, 10)
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["lineage"]["environment"]["feature_engine"] == "torch"  # the suite's engine, as it ran
    metrics = evaluate(result.model_dir, split).metrics
    assert metrics["test_images"] == 50
    assert metrics["accuracy"] > 0.3, metrics["accuracy"]  # 10 classes: chance is 0.1
    assert result.history[0]["train_accuracy"] >= metrics["accuracy"] - 0.2


def test_auto_records_its_choice_and_why_in_the_models_lineage(data) -> None:
    base, split = data
    auto = params(base, "train.scenario=auto", "train.device=cpu")
    result = train(split, auto, RunFolder(base / "auto"), {"workspace_commit": "x"})
    config = json.loads((result.model_dir / "config.json").read_text())
    assert config["scenario"] == "features"  # 12 images a class, below auto_features_below
    choice = config["lineage"]["scenario_choice"]
    assert choice["scenario"] == "features" and choice["device"] == "cpu" and "linear probe" in choice["reason"]
    assert config["lineage"]["workspace_commit"] == "x"  # added to the lineage given, nothing dropped


def test_hybrid_probes_then_fine_tunes(data) -> None:
    base, split = data
    train(split, params(base, "train.scenario=features"), RunFolder(base / "warm"), {"data_md5": "h"})
    result = train(split, params(base, "train.scenario=hybrid", "train.freeze_stages=3"), RunFolder(base / "hybrid"),
                   {"data_md5": "h"})  # fmt: skip
    assert result.features_from_cache  # the linear probe reuses the features scenario's stored features
    weights = load_file(result.model_dir / "model.safetensors")
    assert "classifier.weight" in weights and weights["classifier.weight"].shape == (10, 1280)
    assert not (result.model_dir / "classifier.skops").exists()
    metrics = evaluate(result.model_dir, split).metrics
    assert metrics["accuracy"] > 0.3, metrics["accuracy"]


def test_mid_level_features_predict_the_same_through_the_network_and_the_store(data) -> None:
    from headstart.library.models.classical import load_classifier
    from headstart.library.training.feature_store import FeatureStore

    base, split = data
    settings = params(base, "train.scenario=features", "model.feature_stages=2")
    result = train(split, settings, RunFolder(base / "stages"), {})
    assert result.config.feature_stages == 2
    assert load_classifier(result.model_dir)[-1].n_features_in_ == 112 + 320  # lite0's last two stages, pooled
    through_network = evaluate(result.model_dir, split)
    through_store = evaluate(result.model_dir, split, store=FeatureStore(base / "fc", 10**9))
    assert through_network.predicted == through_store.predicted and through_network.metrics["accuracy"] > 0.3


def test_freeze_by_name_patterns_only() -> None:
    from headstart.ground.params import HeadParams
    from headstart.library.models.backbones import create_classifier

    model = create_classifier("resnet50", "none", 3, HeadParams())
    names = freeze(model, 0, "trained", [r"layer1", r"conv1$"])
    assert names == ["conv1", "layer1"]  # outermost matches only
    assert not model.layer1[0].conv1.weight.requires_grad and model.layer2[0].conv1.weight.requires_grad
    assert isinstance(model.layer1[0].bn1, torch.nn.BatchNorm2d)  # bn=trained keeps statistics updating


def test_untrusted_classifier_types_are_refused(tmp_path: Path) -> None:
    # a function reference is exactly what a malicious file would smuggle in
    sio.dump(make_pipeline(FunctionTransformer(os.getcwd)), tmp_path / "classifier.skops")
    with pytest.raises(WeightsError, match=r"untrusted types \['posix.getcwd'\]"):
        load_classifier(tmp_path)
