"""What transfer bought: the same head on features of the pretrained backbone and of a randomly initialised one.

Both arms fit the model's classifier (a features model's own, with its chosen C; else ``train.classifier``) on the
rows the model was fitted on (its recorded ``features_fit``) at the model's own preprocessing, and are scored on
the test rows: on a stratified sample of at most ``evaluate.transfer_images`` of each (the random arm's extraction
was a third of a first run's time; both arms see the same sample, so the gap is paired and gets a bootstrap
interval). The random backbone is seeded (``train.seed``), so its features are content-addressed like any other
and a rerun reads them from the store. The gap tells a user whether ImageNet weights help on their images.
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

    from headstart.library.evaluation.confidence import paired_difference
    from headstart.library.models.backbones import create_pretrained, freeze_all
    from headstart.library.training.features import extractor_of, features_for

    p, cap = params.train, params.evaluate.transfer_images
    fitted_on = config.features_fit or p.features_fit  # the model's own rows (a sweep trial: train only)
    is_fit = split["split"].eq("train") | (split["split"].eq("val") & (fitted_on == "train+val"))
    fit, test = (
        stratified_sample(split[is_fit], cap, p.seed),
        stratified_sample(split[split["split"].eq("test")], cap, p.seed),
    )
    index = {name: i for i, name in enumerate(config.classes)}
    y_fit, y_test = fit["label"].map(index).to_numpy(), test["label"].map(index).to_numpy()
    c = config.classifier_c if config.classifier_c is not None else FALLBACK_C
    classifier = config.classifier or p.classifier
    predicted = {}
    for arm, weights in (("pretrained", params.model.weights), ("random_init", "none")):
        with torch.random.fork_rng():  # the caller's random state is left as it was
            torch.manual_seed(p.seed)  # the random arm's initialisation: the same backbone on every run
            model = create_pretrained(config.backbone, weights)
        model.reset_classifier(0, global_pool=config.head["pool"])
        freeze_all(model)
        extractor = extractor_of(model, config.backbone, config.pre, config.head["pool"], config.feature_stages)
        batch = params.evaluate.batch_size
        fitted = features_for(model, fit, extractor, store, batch, p.num_workers, p.device).features
        tested = features_for(model, test, extractor, store, batch, p.num_workers, p.device).features
        head, _ = fit_classifier(classifier, c, p.seed, fitted, y_fit)
        predicted[arm] = head.predict(tested)
    accuracy = {arm: float(accuracy_score(y_test, predicted[arm])) for arm in predicted}
    g = params.gate  # the interval is computed as the gate's are
    gain = paired_difference(
        "accuracy", y_test, predicted["pretrained"], predicted["random_init"], len(config.classes),
        g.ci_confidence, g.bootstrap_resamples, g.bootstrap_seed,
    )  # fmt: skip
    log.info("transfer: %s on pretrained features %.3f, on random-init features %.3f (gain %s; %d fit, %d test)",
             classifier, accuracy["pretrained"], accuracy["random_init"], gain.describe(),
             len(fit), len(test))  # fmt: skip
    return {
        "pretrained_accuracy": accuracy["pretrained"],
        "random_init_accuracy": accuracy["random_init"],
        "gain": accuracy["pretrained"] - accuracy["random_init"],
        "gain_low": gain.low,
        "gain_high": gain.high,
        "confidence": gain.confidence,
        "head": f"{classifier} (C={c})" if classifier != "random_forest" else classifier,
        "input_size": config.pre.input_size,
        "fit_images": len(fit),
        "test_images": len(test),
        "sampled": bool(len(fit) < is_fit.sum() or len(test) < split["split"].eq("test").sum()),
    }


def stratified_sample(rows: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most ``cap`` of ``rows``, each label in proportion and every label at least once (seeded; in their
    original order); all when they fit or ``cap`` is None."""
    from headstart.library.data.sampling import stratified_rows

    return rows.iloc[stratified_rows(rows["label"].to_numpy(), cap, seed)]


def transfer_markdown(transfer: dict | None) -> str:
    """One paragraph for the model card and the run's metrics artifact."""
    if not transfer:
        return "Not measured (`evaluate.transfer_report: false`)."
    if "skipped" in transfer:
        return f"Not measured: {transfer['skipped']}."
    verdict = "helped" if transfer["gain"] > 0 else "did not help"
    interval = ""
    if "gain_low" in transfer:  # reports before the interval was measured have none
        low, high = transfer["gain_low"], transfer["gain_high"]
        interval = f", {100 * transfer['confidence']:.0f} % interval {100 * low:+.1f} to {100 * high:+.1f}"
    sample = " (a stratified sample)" if transfer.get("sampled") else ""
    return (
        f"The same head ({transfer['head']}, {transfer['input_size']} px features, fitted on "
        f"{transfer['fit_images']} images, scored on {transfer['test_images']}{sample}) scores "
        f"**{transfer['pretrained_accuracy']:.4f}** on the pretrained backbone's features and "
        f"**{transfer['random_init_accuracy']:.4f}** on a randomly initialised one's: ImageNet weights {verdict} "
        f"here ({100 * transfer['gain']:+.1f} points{interval})."
    )
