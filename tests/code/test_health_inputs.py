"""What the health checks read from the registry or the data is checked before use: a hostile drift reference
is refused with a reason, never a crash and never a false drift; degenerate label sets are skipped, not fatal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save

from headstart.ground.params import Params
from headstart.library.health.checkup import _label_issues, compare
from headstart.library.health.reference import Reference, from_bytes, to_bytes

CLASSES = ["a", "b", "c"]


def stored(features, labels, classes=CLASSES, extractor=None) -> bytes:
    reference = Reference(np.asarray(features), np.asarray(labels), list(classes), extractor or {"backbone": "x"})
    return to_bytes(reference)


def good() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(30, 8)).astype(np.float32), np.arange(30) % 3


@pytest.mark.parametrize(
    ("hostile", "reason"),
    [
        (lambda f, y: stored(f, y + 3), "outside its 3 classes"),
        (lambda f, y: stored(f, y - 1), "outside its 3 classes"),
        (lambda f, y: stored(f, y[:10]), "one integer per feature row"),
        (lambda f, y: stored(np.where(np.arange(8) == 0, np.nan, f), y), "finite"),
        (lambda f, y: stored(f[:1], y[:1]), "2 or more rows"),
        (lambda f, y: stored(f, y.astype(np.float32)), "integer"),
        (lambda f, y: stored(f, y, ["a", "a", "b"]), "distinct names"),
        (lambda f, y: save({"features": torch.from_numpy(f)}), "not a drift reference"),
        (lambda f, y: b"\x00" * 64, "not a drift reference"),
    ],
)
def test_a_hostile_reference_is_refused_with_a_reason(hostile, reason) -> None:
    features, labels = good()
    with pytest.raises(ValueError, match=reason):
        from_bytes(hostile(features, labels))


def test_a_reference_of_another_width_is_skipped_not_a_crash() -> None:
    features, labels = good()
    theirs = from_bytes(stored(features, labels))
    result = compare(theirs, "v1", np.zeros((5, 4), np.float32), ["a"] * 5, Params())
    assert result["skipped"].startswith("champion v1's features are 8 wide") and "mmd2" not in result


def test_label_issues_skip_one_class_and_ignore_classes_only_in_the_test_set() -> None:
    import pandas as pd

    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    rows = pd.DataFrame({"file": [f"{i}.png" for i in range(40)]})
    one_class = _label_issues(rows, features, np.zeros(40, np.int64), ["a", "b"], Params())
    assert one_class["skipped"] == "fewer than 2 classes" and one_class["checked"] == 0
    # class "b" exists only in the test split: the two training classes are still checked
    labels = np.where(np.arange(40) % 2 == 0, 0, 2)
    checked = _label_issues(rows, features + labels[:, None] * 3.0, labels, ["a", "b", "c"], Params())
    assert checked["checked"] == 40 and "skipped" not in checked
    assert {i["label"] for i in checked["issues"]} <= {"a", "c"}
