"""The label-issue probe: its folds fitted at once equal one head fitted per fold, bfloat16 flags what float32 flags,
and the health step's features at a size the network takes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from headstart.library.health.label_issues import PROBE, find_label_issues, out_of_fold_probabilities, probe_dtype
from headstart.library.training.linear_probe import fit_head


def one_head_per_fold(features: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The reference: the previous implementation, a seeded head fitted by ``fit_head`` on each fold in turn."""
    from sklearn.model_selection import StratifiedKFold

    standardised = ((features - features.mean(0)) / (features.std(0) + 1e-6)).astype(np.float32)
    classes = int(labels.max()) + 1
    probabilities = np.zeros((len(labels), classes), np.float32)
    for train, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(standardised, labels):
        torch.manual_seed(seed)
        head = nn.Linear(standardised.shape[1], classes)
        fit_head(head, standardised[train], labels[train].astype(np.int64), PROBE)
        with torch.inference_mode():
            probabilities[held_out] = torch.softmax(head(torch.from_numpy(standardised[held_out])), 1).numpy()
    return probabilities


def test_all_folds_fitted_at_once_give_the_probabilities_of_one_fit_per_fold() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 500)
    centres = rng.normal(size=(4, 48))
    features = (centres[labels] + rng.normal(scale=2.0, size=(500, 48))).astype(np.float32)  # overlapping classes
    labels[:25] = (labels[:25] + 1) % 4  # some flips: the heads disagree with their labels there
    batched = out_of_fold_probabilities(features, labels, 5, seed=7)
    reference = one_head_per_fold(features, labels, 5, seed=7)
    np.testing.assert_allclose(batched, reference, atol=2e-5)
    assert (batched.argmax(1) == reference.argmax(1)).all()
    # not a trivial agreement: the held-out probabilities are far from certain and far from uniform
    assert 0.4 < batched.max(1).mean() < 0.99


def test_a_bfloat16_probe_flags_what_the_float32_probe_flags() -> None:
    """probe_precision: bfloat16 products (a speed-up) move the probabilities by rounding, not the verdicts:
    the same images flagged but for a few at the threshold, the same flips found."""
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 6, 2000)
    features = (rng.normal(size=(6, 256))[labels] + rng.normal(scale=4.0, size=(2000, 256))).astype(np.float32)
    flipped = rng.choice(2000, 100, replace=False)
    labels[flipped] = (labels[flipped] + 1 + rng.integers(0, 5, 100)) % 6
    exact = find_label_issues(features, labels, 5, 0, "float32")
    rounded = find_label_issues(features, labels, 5, 0, "bfloat16")
    assert (exact.precision, rounded.precision) == ("float32", "bfloat16")
    ours, theirs = {i["row"] for i in exact.issues}, {i["row"] for i in rounded.issues}
    assert len(ours) > 50 and len(ours & theirs) / len(ours | theirs) >= 0.97
    assert abs(len(ours & set(flipped)) - len(theirs & set(flipped))) <= 3
    probabilities = out_of_fold_probabilities(features, labels, 5, 0, torch.bfloat16)
    reference = out_of_fold_probabilities(features, labels, 5, 0)
    assert 0 < np.abs(probabilities - reference).max() < 0.05
    assert probe_dtype("float32") == torch.float32 and probe_dtype("bfloat16") == torch.bfloat16


def test_the_health_step_uses_a_fixed_size_network_at_its_own_size() -> None:
    """health.input_size is a preference: ViT/DeiT/Swin take only their pretrained size, so the health step
    extracts at that size instead of failing; a network that takes any size gets the cheap one."""
    from headstart.ground.params import Params
    from headstart.library.health.checkup import health_extractor

    def size(backbone: str) -> int:
        model = {"backbone": backbone, "weights": "none"}
        params = Params.model_validate({"model": model, "health": {"input_size": 96}})
        return health_extractor(params)[1].pre.input_size

    assert size("vit_tiny_patch16_224") == 224
    assert size("tf_efficientnet_lite0") == 96
