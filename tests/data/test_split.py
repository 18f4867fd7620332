"""The split depends only on content hash and seed: stable under growth, duplicates never straddle."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from headstart.ground.errors import DataError
from headstart.ground.params import SplitParams
from headstart.library.data.split import make_split


def manifest(n_per_class: int, classes=("a", "b", "c"), offset: int = 0) -> pd.DataFrame:
    rows = []
    for cls in classes:
        for i in range(offset, offset + n_per_class):
            sha = hashlib.sha256(f"{cls}-{i}".encode()).hexdigest()
            rows.append({"path": f"{cls}/{i}.png", "label": cls, "sha256": sha, "error": None})
    return pd.DataFrame(rows)


def test_adding_images_never_moves_old_ones() -> None:
    params = SplitParams(seed=7, val_fraction=0.2, test_fraction=0.2)
    small = make_split(manifest(50), Path("d"), params).table.set_index("file")["split"]
    grown = make_split(pd.concat([manifest(50), manifest(50, offset=50)]), Path("d"), params)
    grown_splits = grown.table.set_index("file")["split"]
    assert (grown_splits.loc[small.index] == small).all()
    assert set(grown_splits.loc[[f for f in grown_splits.index if f not in small.index]]) == {
        "train",
        "val",
        "test",
    }


def test_stratified_in_expectation_and_seed_dependent() -> None:
    params = SplitParams(seed=1, val_fraction=0.15, test_fraction=0.15)
    table = make_split(manifest(400), Path("d"), params).table
    shares = table.groupby("label")["split"].value_counts(normalize=True).unstack()
    assert ((shares["test"] - 0.15).abs() < 0.06).all() and ((shares["train"] - 0.70).abs() < 0.08).all()
    other = make_split(manifest(400), Path("d"), SplitParams(seed=2)).table
    assert (other["split"] != table["split"]).mean() > 0.2


def test_identical_images_share_a_split_and_errors_are_excluded() -> None:
    rows = manifest(60)
    dupes = rows.iloc[:20].copy()
    dupes["path"] = [p.replace(".png", "-copy.png") for p in dupes["path"]]
    broken = pd.DataFrame([{"path": "a/bad.png", "label": "a", "sha256": "00", "error": "empty file (0 bytes)"}])
    table = make_split(pd.concat([rows, dupes, broken]), Path("d"), SplitParams()).table
    assert table.groupby("sha256")["split"].nunique().max() == 1
    assert "d/a/bad.png" not in set(table["file"])


def test_fixed_test_set_is_the_test_split_and_leaks_are_dropped() -> None:
    pool, fixed = manifest(40), manifest(5, offset=1000)
    leaked = fixed.iloc[:2].copy()  # two evaluation images also present in the training pool
    leaked["path"] = ["a/leak-0.png", "a/leak-1.png"]
    result = make_split(pd.concat([pool, leaked]), Path("pool"), SplitParams(), fixed, Path("fixed"))
    test = result.table[result.table["split"] == "test"]
    assert set(test["file"]) == {f"fixed/{p}" for p in fixed["path"]}
    assert result.dropped_as_test_duplicates == 2
    assert not result.table["file"].str.contains("leak").any()
    assert set(result.table["split"]) == {"train", "val", "test"}


def test_no_usable_images_is_a_clear_error() -> None:
    broken = pd.DataFrame([{"path": "a/x.png", "label": "a", "sha256": "1", "error": "not an image"}])
    with pytest.raises(DataError, match="no usable images"):
        make_split(broken, Path("empty-set"), SplitParams())
