"""The transfer report: the same head on pretrained vs randomly initialised backbone features."""

from __future__ import annotations

from pathlib import Path

from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.evaluation.metrics import evaluate
from headstart.library.evaluation.transfer import transfer_markdown, transfer_report
from headstart.library.training.feature_store import FeatureStore
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_the_pretrained_arm_is_the_model_itself_and_a_rerun_reads_both_arms_from_the_store(tiny_split, tmp_path):
    _, split = tiny_split(12, 5, 1)
    store_dir = tmp_path / "store"
    params = load_params(REPO_PARAMS, [
        "train.num_workers=0", "model.features_input_size=32", "train.scenario=features",
        f"train.feature_cache={store_dir}",
    ])  # fmt: skip
    trained = train(split, params, RunFolder(tmp_path / "run"), {})
    store = FeatureStore(store_dir, 10**9)
    accuracy = evaluate(trained.model_dir, split, store=store).metrics["accuracy"]
    report = transfer_report(trained.config, split, params, store)
    # a features model's head on pretrained features is the model: the same rows, classifier and C
    assert report["pretrained_accuracy"] == accuracy
    assert report["fit_images"] == 120 and report["test_images"] == 50
    assert report["gain"] == report["pretrained_accuracy"] - report["random_init_accuracy"]
    # measured at 32 px, 12/class: 0.60 pretrained, 0.56 random (at such a size even random convolutions separate
    # Fashion-MNIST; docs/training.md, "The transfer report", has the gap at 224 px); both arms well above chance (0.1)
    assert 0.3 < report["random_init_accuracy"] <= 1 and report["random_init_accuracy"] != accuracy, report
    volume = store.volume()
    assert transfer_report(trained.config, split, params, store) == report  # seeded random arm: reproducible
    assert store.volume() == volume  # and read back: nothing extracted the second time
    assert f"**{report['random_init_accuracy']:.4f}**" in transfer_markdown(report)


def test_a_transfer_report_that_cannot_be_measured_is_reported_and_fails_nothing(tiny_split, tmp_path) -> None:
    from headstart.library.evaluation.transfer import measure_transfer
    from headstart.library.models.model_config import read_config

    _, split = tiny_split(12, 5, 1)
    overrides = ["train.num_workers=0", "model.features_input_size=32", "train.scenario=features",
                 f"train.feature_cache={tmp_path / 'store'}"]  # fmt: skip
    trained = train(split, load_params(REPO_PARAMS, overrides), RunFolder(tmp_path / "run"), {})
    missing = tmp_path / "gone.safetensors"
    unreachable = load_params(REPO_PARAMS, [*overrides, f"model.weights=file:{missing}"])
    report = measure_transfer(read_config(trained.model_dir), split, unreachable, None)
    assert list(report) == ["skipped"] and str(missing) in report["skipped"]
    assert transfer_markdown(report).startswith("Not measured: ") and str(missing) in transfer_markdown(report)


def test_cross_validated_c_falls_back_when_a_class_is_too_small_to_fold() -> None:
    import numpy as np

    from headstart.library.models.classical import FALLBACK_C, fit_classifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(23, 8)), np.array([0] * 10 + [1] * 10 + [2] * 3)  # class 2: three images
    # linear_svm calibrates with 3 folds inside each of the 3 search folds (2 images of class 2 each): every fit
    # fails; C falls back, and the 3 images are enough for the final fit
    classifier, found = fit_classifier("linear_svm", "auto", 0, x, y)
    assert found == {"classifier_c": FALLBACK_C} and classifier.predict(x).shape == (23,)
    _, searched = fit_classifier("logreg", "auto", 0, x, y)
    assert set(searched) == {"classifier_c", "cv_accuracy"}
    assert fit_classifier("logreg", "auto", 0, x[:21], y[:21])[1] == {"classifier_c": FALLBACK_C}  # one image: no CV
