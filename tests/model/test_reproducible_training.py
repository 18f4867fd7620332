"""Same inputs, same model: each scenario trained twice from the same split and params gives bit-identical
weights (and classifier) and identical test metrics; so do two trainings under torchrun with 2 ranks. The loader's
augmentation streams differ between workers and repeat across runs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.loader import ImageTable, make_loader
from headstart.library.data.transforms import Preprocessing, build_transform
from headstart.library.evaluation.metrics import evaluate
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tiny_split):
    return tiny_split(12, 5, 2)


def digests(model_dir: Path) -> dict[str, str]:
    """sha256 of every file of a model folder but its config (which holds the run's lineage)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in model_dir.iterdir() if p.name != "config.json"}


@pytest.mark.parametrize(
    "scenario, workers", [("features", 0), ("finetune", 2), ("hybrid", 0)], ids=["features", "finetune", "hybrid"]
)
def test_the_same_inputs_train_the_same_model(data, tmp_path: Path, scenario: str, workers: int) -> None:
    _, split = data
    trained = []
    for attempt in ("first", "second"):
        params = load_params(
            REPO_PARAMS,
            [f"train.scenario={scenario}", "model.input_size=32", "model.features_input_size=32", "train.epochs=2",
             f"train.num_workers={workers}", "train.head_epochs=20", "train.seed=3",
             f"train.feature_cache={tmp_path / attempt / 'store'}"],  # each extracts its own features
        )  # fmt: skip
        result = train(split, params, RunFolder(tmp_path / attempt), {})
        trained.append((digests(result.model_dir), evaluate(result.model_dir, split).metrics, result.history))
    (first_files, first_metrics, first_curve), (second_files, second_metrics, second_curve) = trained
    assert "model.safetensors" in first_files and ("classifier.skops" in first_files) == (scenario == "features")
    assert first_files == second_files  # bit-identical weights (and classifier)
    assert first_metrics == second_metrics and first_curve == second_curve


def test_loader_workers_draw_their_own_augmentations_and_repeat_them(data) -> None:
    _, split = data
    one_image = split[split["split"] == "train"].head(1)
    repeated = one_image.loc[one_image.index.repeat(8)]  # the same image 8 times: only the draws differ
    augment = load_params(REPO_PARAMS).augment
    pre = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")

    def draws(seed: int) -> list[np.ndarray]:
        table = ImageTable(repeated, sorted(split["label"].unique()), build_transform(pre, augment))
        loader = make_loader(table, 1, False, num_workers=2, seed=seed)  # in order: worker 0 loads 0, 2, 4, 6
        return [images[0].numpy() for images, _ in loader]

    first, again, other_seed = draws(0), draws(0), draws(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # a rerun repeats every draw
    worker0, worker1 = first[0::2], first[1::2]
    assert not any(np.array_equal(a, b) for a, b in zip(worker0, worker1, strict=True))  # workers never echo
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_seed, strict=True))  # the seed decides


def test_two_ranks_train_the_same_model_twice(data, tmp_path: Path) -> None:
    base, _ = data
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(epochs=2, num_workers=1, batch_size=16, scenario="finetune", distributed={"nproc": 2})
    params["model"]["input_size"] = 32
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    models = []
    for attempt in ("first", "second"):
        out = tmp_path / attempt
        out.mkdir()
        (out / "split.csv").write_text((base / "split.csv").read_text())
        command = ["headstart", "step", "train", "--params", str(tmp_path / "params.yaml"), "--out", str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "world size 2 (gloo)" in done.stdout + done.stderr
        models.append(digests(out / "model"))
        recorded = yaml.safe_load((out / "model" / "config.json").read_text())["lineage"]
        assert recorded["environment"]["world_size"] == 2
        assert recorded["params"]["train"]["distributed"]["nproc"] == 2  # the params as given reach the record
    assert models[0] == models[1]
