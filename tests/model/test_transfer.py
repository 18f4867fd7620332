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
    assert report["sampled"] is False and report["gain_low"] <= report["gain"] <= report["gain_high"]
    # measured at 32 px, 12/class: 0.60 pretrained, 0.56 random (at such a size even random convolutions separate
    # Fashion-MNIST; docs/training.md, "The transfer report", has the gap at 224 px); both arms well above chance (0.1)
    assert 0.3 < report["random_init_accuracy"] <= 1 and report["random_init_accuracy"] != accuracy, report
    volume = store.volume()
    assert transfer_report(trained.config, split, params, store) == report  # seeded random arm: reproducible
    assert store.volume() == volume  # and read back: nothing extracted the second time
    assert f"**{report['random_init_accuracy']:.4f}**" in transfer_markdown(report)


def test_a_capped_report_scores_both_arms_on_one_stratified_sample(tiny_split, tmp_path) -> None:
    import diskcache

    from headstart.library.evaluation.transfer import stratified_sample

    _, split = tiny_split(12, 5, 1)
    store_dir = tmp_path / "store"
    overrides = ["train.num_workers=0", "model.features_input_size=32", "train.scenario=features",
                 f"train.feature_cache={store_dir}"]  # fmt: skip
    trained = train(split, load_params(REPO_PARAMS, overrides), RunFolder(tmp_path / "run"), {})
    capped = load_params(REPO_PARAMS, [*overrides, "evaluate.transfer_images=30"])
    store = FeatureStore(store_dir, 10**9)
    stored = len(diskcache.Cache(store_dir))  # entries: one per image and extractor
    report = transfer_report(trained.config, split, capped, store)
    assert report["sampled"] is True and report["fit_images"] == 30 and report["test_images"] == 30
    # every class in proportion: 3 of each class's 12 fit rows and 3 of its 5 test rows
    for rows in (split[split["split"].isin(["train", "val"])], split[split["split"] == "test"]):
        counts = stratified_sample(rows, 30, capped.train.seed)["label"].value_counts()
        assert len(counts) == 10 and counts.min() == counts.max() == 3, counts
    # only sampled rows were extracted: 30 pretrained test rows (training stored the fit rows) and 30 + 30 random
    # (every row: 50 + 120 + 50)
    assert len(diskcache.Cache(store_dir)) - stored == 90
    assert (
        report["gain_low"] <= report["gain"] <= report["gain_high"]
        and report["confidence"] == capped.gate.ci_confidence
    )
    assert transfer_report(trained.config, split, capped, store) == report  # the same sample and interval again
    assert "scored on 30 (a stratified sample)" in transfer_markdown(report)


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


def test_the_c_search_on_one_blas_thread_finds_what_the_default_threads_find() -> None:
    """fit_classifier limits BLAS to one thread (a speed-up): the same C, the same predictions, the same
    coefficients (to rounding) as the search run with the process's own thread pools."""
    import numpy as np
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from headstart.library.models.classical import C_GRIDS, fit_classifier, make_classifier

    rng = np.random.default_rng(5)
    y = rng.integers(0, 6, 400)
    x = rng.normal(size=(6, 96))[y] + rng.normal(scale=3.0, size=(400, 96))  # overlapping: C matters
    limited, found = fit_classifier("logreg", "auto", 0, x, y)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    grid = {"logisticregression__C": list(C_GRIDS["logreg"])}
    default = GridSearchCV(make_classifier("logreg", 0.1, 0), grid, cv=cv).fit(x, y)
    assert found["classifier_c"] == default.best_params_["logisticregression__C"]
    assert found["cv_accuracy"] == default.best_score_ and 0.3 < found["cv_accuracy"] < 0.95
    np.testing.assert_allclose(limited[-1].coef_, default.best_estimator_[-1].coef_, rtol=1e-4, atol=1e-6)
    assert (limited.predict(x) == default.predict(x)).all()


def test_a_capped_c_search_chooses_on_its_sample_and_fits_on_every_row() -> None:
    """classifier_search_images: C is the one GridSearchCV picks on the seeded stratified sample, and the
    classifier is then fitted on every row with it (not the sample's fit)."""
    import numpy as np
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from headstart.library.data.sampling import stratified_rows
    from headstart.library.models.classical import C_GRIDS, fit_classifier, make_classifier

    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 600)
    x = rng.normal(size=(4, 48))[y] + rng.normal(scale=3.0, size=(600, 48))
    capped, found = fit_classifier("logreg", "auto", 0, x, y, search_images=200)
    sample = stratified_rows(y, 200, 0, at_least=5)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    grid = {"logisticregression__C": list(C_GRIDS["logreg"])}
    on_sample = GridSearchCV(make_classifier("logreg", 0.1, 0), grid, cv=cv).fit(x[sample], y[sample])
    assert found == {
        "classifier_c": on_sample.best_params_["logisticregression__C"],
        "cv_accuracy": on_sample.best_score_,
        "search_images": 200,
    }
    on_all = make_classifier("logreg", found["classifier_c"], 0).fit(x, y)
    np.testing.assert_allclose(capped[-1].coef_, on_all[-1].coef_, rtol=1e-4, atol=1e-6)
    assert not np.allclose(capped[-1].coef_, on_sample.best_estimator_[-1].coef_, atol=1e-3)
    assert "search_images" not in fit_classifier("logreg", "auto", 0, x, y, search_images=600)[1]


def test_a_fit_that_overwrites_its_features_fits_the_same_classifier_and_leaves_later_inputs_alone() -> None:
    """overwrite_x (the features retrain's memory saving): the same C and the same coefficients as a fit on a copy,
    the matrix now holds the standardised features (scored by the classifier's last step as the copy's fit is by
    the whole pipeline), and the returned classifier does not standardise what it predicts on in place."""
    import numpy as np

    from headstart.library.models.classical import fit_classifier

    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 500)
    x = (rng.normal(size=(5, 64))[y] + rng.normal(scale=3.0, size=(500, 64)) + 4.0).astype(np.float32)
    original = x.copy()
    kept, kept_found = fit_classifier("logreg", "auto", 0, x, y, search_images=200)
    assert np.array_equal(x, original)  # the default copies
    overwritten, found = fit_classifier("logreg", "auto", 0, x, y, search_images=200, overwrite_x=True)
    assert found == kept_found
    np.testing.assert_array_equal(overwritten[-1].coef_, kept[-1].coef_)
    assert np.array_equal(x, kept[0].transform(original)) and not np.allclose(x, original)
    assert overwritten[-1].score(x, y) == kept.score(original, y)
    later = original.copy()
    assert (overwritten.predict(later) == kept.predict(original)).all() and np.array_equal(later, original)
