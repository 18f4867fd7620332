"""What transfer bought: the same head on features of the pretrained backbone and of a randomly initialised one.

Both arms fit the model's classifier (a features model's own, with its chosen C; else ``train.classifier``) on the
rows the model was fitted on (its recorded ``features_fit``) at the model's own preprocessing, and are scored on
the test rows. The random backbone is seeded (``train.seed``), so
its features are content-addressed like any other and a rerun reads them from the store: the report costs one
extra extraction the first time only. The gap tells a user whether ImageNet weights help on their images.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from headstart.ground.errors import HeadstartError
from headstart.ground.params import Params
from headstart.library.models.classical import FALLBACK_C, fit_classifier
from headstart.library.models.model_config import ModelConfig

if TYPE_CHECKING:  # torch loads where the report is measured; the model card only renders it
    from headstart.library.training.feature_store import FeatureStore

log = logging.getLogger(__name__)


def measure_transfer(config: ModelConfig, split: pd.DataFrame, params: Params, store: FeatureStore | None) -> dict:
    """:func:`transfer_report`, or ``{"skipped": why}`` when it cannot be measured (weights unreachable, a class
    too small to fit, non-finite features): a report never fails the run it describes."""
    try:
        return transfer_report(config, split, params, store)
    except (HeadstartError, ValueError, OSError, RuntimeError) as exc:
        log.warning("transfer report skipped: %s", exc)
        return {"skipped": str(exc)}


def transfer_report(config: ModelConfig, split: pd.DataFrame, params: Params, store: FeatureStore | None) -> dict:
    """Test accuracy of the head on pretrained vs randomly initialised backbone features, and the gap.

    A features-scenario model's head is its own classifier with the C it chose; other scenarios are compared with
    a linear probe (``train.classifier`` at C = the fallback, no search: the report stays cheap)."""
    import torch
    from sklearn.metrics import accuracy_score

    from headstart.library.models.backbones import create_pretrained, freeze_all
    from headstart.library.training.features import extractor_of, features_for

    p = params.train
    fitted_on = config.features_fit or p.features_fit  # the model's own rows (a sweep trial: train only)
    fit_rows = split["split"].eq("train") | (split["split"].eq("val") & (fitted_on == "train+val"))
    test_rows = split["split"].eq("test")
    index = {name: i for i, name in enumerate(config.classes)}
    y_fit, y_test = split.loc[fit_rows, "label"].map(index), split.loc[test_rows, "label"].map(index)
    c = config.classifier_c if config.classifier_c is not None else FALLBACK_C
    classifier = config.classifier or p.classifier
    accuracy = {}
    for arm, weights in (("pretrained", params.model.weights), ("random_init", "none")):
        with torch.random.fork_rng():  # the caller's random state is left as it was
            torch.manual_seed(p.seed)  # the random arm's initialisation: the same backbone on every run
            model = create_pretrained(config.backbone, weights)
        model.reset_classifier(0, global_pool=config.head["pool"])
        freeze_all(model)
        extractor = extractor_of(model, config.backbone, config.pre, config.head["pool"], config.feature_stages)
        batch = params.evaluate.batch_size
        fitted = features_for(model, split[fit_rows], extractor, store, batch, p.num_workers, p.device).features
        tested = features_for(model, split[test_rows], extractor, store, batch, p.num_workers, p.device).features
        head, _ = fit_classifier(classifier, c, p.seed, fitted, y_fit.to_numpy())
        accuracy[arm] = float(accuracy_score(y_test.to_numpy(), head.predict(tested)))
    gain = accuracy["pretrained"] - accuracy["random_init"]
    log.info("transfer: %s on pretrained features %.3f, on random-init features %.3f (gain %+.3f)",
             classifier, accuracy["pretrained"], accuracy["random_init"], gain)  # fmt: skip
    return {
        "pretrained_accuracy": accuracy["pretrained"],
        "random_init_accuracy": accuracy["random_init"],
        "gain": gain,
        "head": f"{classifier} (C={c})" if classifier != "random_forest" else classifier,
        "input_size": config.pre.input_size,
        "fit_images": int(fit_rows.sum()),
        "test_images": int(test_rows.sum()),
    }


def transfer_markdown(transfer: dict | None) -> str:
    """One paragraph for the model card and the run's metrics artifact."""
    if not transfer:
        return "Not measured (`evaluate.transfer_report: false`)."
    if "skipped" in transfer:
        return f"Not measured: {transfer['skipped']}."
    verdict = "helped" if transfer["gain"] > 0 else "did not help"
    return (
        f"The same head ({transfer['head']}, {transfer['input_size']} px features, fitted on "
        f"{transfer['fit_images']} images) scores **{transfer['pretrained_accuracy']:.4f}** on the pretrained "
        f"backbone's features and **{transfer['random_init_accuracy']:.4f}** on a randomly initialised one's: "
        f"ImageNet weights {verdict} here ({100 * transfer['gain']:+.1f} points)."
    )
