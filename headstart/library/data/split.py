"""Deterministic train/val/test split keyed by content hash.

An image's split depends only on its sha256 and the seed: adding images never moves old ones between
splits, and identical files (same sha256) always land together. Drawing the same uniform number per
hash within every class keeps the split stratified in expectation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from headstart.ground.errors import DataError
from headstart.ground.params import SplitParams
from headstart.library.data.leakage import DuplicateReport

SPLIT_COLUMNS = ["file", "label", "sha256", "split"]


@dataclass(frozen=True)
class SplitResult:
    """The split table (one row per usable image) and what was left out of training to avoid leakage."""

    table: pd.DataFrame
    dropped_as_test_duplicates: int | None  # None when read back from a split file
    duplicates: DuplicateReport | None = None  # the near-duplicate search (health.leakage)

    def counts(self) -> dict[str, int]:
        """Images per split."""
        return {k: int(v) for k, v in self.table["split"].value_counts().items()}


def hash_fraction(sha256: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by the image content and the seed."""
    digest = hashlib.sha256(f"{seed}:{sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(sha256: str, params: SplitParams, has_fixed_test: bool) -> str:
    """The split of one image. With a fixed evaluation set, only train and val are drawn here."""
    u = hash_fraction(sha256, params.seed)
    test_fraction = 0.0 if has_fixed_test else params.test_fraction
    if u < test_fraction:
        return "test"
    return "val" if u < test_fraction + params.val_fraction else "train"


def _usable(manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    valid = manifest[manifest["error"].isna() & manifest["label"].notna()]
    return pd.DataFrame(
        {"file": [str(root / p) for p in valid["path"]], "label": valid["label"], "sha256": valid["sha256"]}
    )


def make_split(
    manifest: pd.DataFrame,
    root: Path,
    params: SplitParams,
    test_manifest: pd.DataFrame | None = None,
    test_root: Path | None = None,
) -> SplitResult:
    """Split the usable rows of a manifest; a fixed evaluation set, when given, is the test split."""
    pool = _usable(manifest, root)
    if pool.empty:
        raise DataError(f"{root}: no usable images to split")
    has_fixed_test = test_manifest is not None
    pool["split"] = [assign(h, params, has_fixed_test) for h in pool["sha256"]]
    dropped = 0
    if has_fixed_test:
        test = _usable(test_manifest, test_root or root)
        test["split"] = "test"
        leaking = pool["sha256"].isin(set(test["sha256"]))  # never train on an evaluation image
        dropped = int(leaking.sum())
        pool = pd.concat([pool[~leaking], test], ignore_index=True)
    if not (pool["split"] == "train").any():
        raise DataError(f"{root}: the split left no training images; lower split.val_fraction/test_fraction")
    return SplitResult(table=pool[SPLIT_COLUMNS].reset_index(drop=True), dropped_as_test_duplicates=dropped)


def save_split(result: SplitResult, path: Path) -> Path:
    """Write the split table as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    result.table.to_csv(path, index=False)
    return path


def load_split(path: Path) -> pd.DataFrame:
    """Read a split table written by :func:`save_split`."""
    if not path.is_file():
        raise DataError(f"{path}: split file not found; run the split step first")
    return pd.read_csv(path, dtype=str, keep_default_na=False)  # class names like NA, None, nan stay names


def load_manifest_table(path: Path) -> pd.DataFrame:
    """A manifest CSV as the validate step wrote it."""
    if not path.is_file():
        raise DataError(f"{path}: manifest not found; run the validate step first")
    # Only an empty cell is missing: pandas' default NA words (NA, None, null, nan, ...) are class and file names.
    empty_is_missing = {column: [""] for column in ("label", "bytes", "sha256", "width", "height", "mode", "error")}
    return pd.read_csv(
        path,
        dtype={"path": str, "label": str, "sha256": str, "mode": str, "error": str},
        keep_default_na=False,
        na_values=empty_is_missing,
    )
