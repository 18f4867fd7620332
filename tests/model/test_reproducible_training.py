"""Same inputs, same model: each scenario trained twice from the same split and params gives bit-identical
weights (and classifier) and identical test metrics (2 ranks under torchrun, a kill and a resume included:
tests/model/test_distributed.py). Each image's augmentation stream differs from every other's, whichever loader
worker draws it, and repeats across runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

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


def test_each_image_draws_its_own_augmentations_whichever_worker_loads_it(data) -> None:
    _, split = data
    one_image = split[split["split"] == "train"].head(1)
    repeated = one_image.loc[one_image.index.repeat(8)]  # the same image 8 times: only the draws differ
    augment = load_params(REPO_PARAMS).augment
    for transform in augment["transform"]["transforms"]:  # every draw continuous: no two images may agree by chance
        transform["p"] = 1.0
    pre = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")

    def draws(seed: int, workers: int, epoch: int = 0) -> dict[int, np.ndarray]:
        table = ImageTable(repeated, sorted(split["label"].unique()), build_transform(pre, augment), seed=seed)
        loader = make_loader(table, 1, True, num_workers=workers, seed=seed)  # batches of one: worker 0, 1, 0, ...
        loader.sampler.set_epoch(epoch)
        order = [key % len(table) for key in loader.sampler]
        return {i: images[0].numpy() for i, (images, _) in zip(order, loader, strict=True)}

    first = draws(0, workers=2)
    by_worker = {w: [first[i] for i in list(first)[w::2]] for w in (0, 1)}
    assert not any(np.array_equal(a, b) for a in by_worker[0] for b in by_worker[1])  # workers never echo
    assert len({first[i].tobytes() for i in first}) == len(first)  # no two images drew the same
    for again in (draws(0, workers=2), draws(0, workers=0)):  # a rerun, and one loading in this process
        assert all(np.array_equal(first[i], again[i]) for i in first)
    next_epoch, other_seed = draws(0, 2, epoch=1), draws(1, workers=2)
    assert not any(np.array_equal(first[i], next_epoch[i]) for i in first)  # each epoch draws anew
    assert not all(np.array_equal(first[i], other_seed[i]) for i in first)  # the seed decides
