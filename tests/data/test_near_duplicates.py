"""Near-duplicate leakage: planted copies of test images are found whatever was done to them; clean Fashion-MNIST
is flagged at the rate docs/data-health.md states; the split step drops, stops on or keeps leaks as told."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance

from headstart.ground.errors import DataError, ValidationFailed
from headstart.ground.params import HealthParams, Params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.fashion_mnist import read_idx
from headstart.library.data.leakage import apply_policy, find_duplicates
from headstart.library.data.near_duplicates import (
    SHIFT,
    SPECTRUM,
    THUMBNAIL,
    _best_shift,
    _edge_crops,
    _edges,
    _normalised,
    _spectra,
    candidate_index,
    index,
    near_duplicates,
)
from headstart.library.data.split import SplitResult
from tasks import split as split_step
from tasks.pipeline import steps_by_name
from tasks.step import StepContext

HEALTH = HealthParams()
THRESHOLDS = (HEALTH.duplicate_similarity, HEALTH.duplicate_edge_similarity)


def shifted(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """Moved by whole pixels, the uncovered edge black (no wrap-around)."""
    return image.transform(image.size, Image.AFFINE, (1, 0, -dx, 0, 1, -dy), fillcolor=0)


def jpeg(image: Image.Image, quality: int = 80) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


COPIES = {
    "resized x2": lambda im: im.resize((im.width * 2, im.height * 2), Image.BICUBIC),
    "JPEG q=80": jpeg,
    "1 px right": lambda im: shifted(im, 1, 0),
    "1 px up": lambda im: shifted(im, 0, -1),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
}


def grid(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR), dtype=np.float32)


@pytest.fixture(scope="module")
def fashion(fashion_idx_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    train = read_idx(fashion_idx_dir / "train-images-idx3-ubyte.gz")
    labels = read_idx(fashion_idx_dir / "train-labels-idx1-ubyte.gz")
    test = read_idx(fashion_idx_dir / "t10k-images-idx3-ubyte.gz")
    return train, labels, test


def test_every_planted_copy_is_found_and_clean_images_rarely_are(fashion) -> None:
    """100 test images, each planted 5 ways among 8,500 clean training images; then 1,500 clean test images
    against those 8,500 training images (the false-positive rate docs/data-health.md reports: 4.1 % measured)."""
    train, _, test = fashion
    rng = np.random.default_rng(0)
    pool_rows, test_rows = rng.choice(len(train), 8500, replace=False), rng.choice(len(test), 1500, replace=False)
    pool = np.stack([grid(Image.fromarray(train[i])) for i in pool_rows])
    queries = np.stack([grid(Image.fromarray(test[i])) for i in test_rows])
    planted = [
        (j, kind, grid(make(Image.fromarray(test[test_rows[j]])))) for j in range(100) for kind, make in COPIES.items()
    ]
    with_copies = np.concatenate([pool, np.stack([copy for _, _, copy in planted])])

    found = {(d.query, d.match) for d in near_duplicates(queries, with_copies, *THRESHOLDS)}
    # the approximate (inverted-file) candidate search against the exact one it replaced: the same pairs, near enough
    reference = {(d.query, d.match) for d in near_duplicates(queries, with_copies, *THRESHOLDS, exact=True)}
    assert len(found & reference) / len(reference) >= 0.99, (len(found & reference), len(reference))
    missed = [kind for i, (j, kind, _) in enumerate(planted) if (j, len(pool) + i) not in found]
    assert missed == [], f"planted copies not found: {pd.Series(missed).value_counts().to_dict()}"
    flagged = {query for query, match in found if match < len(pool)}  # clean test images matched to clean ones
    assert len(flagged) / len(queries) <= 0.06, len(flagged) / len(queries)


def test_an_image_never_matches_itself_and_pairs_are_reported_once(fashion) -> None:
    train, _, _ = fashion
    grids = np.stack([grid(Image.fromarray(train[i])) for i in range(300)])
    copies = np.concatenate([grids, np.stack([grid(jpeg(Image.fromarray(train[i]))) for i in range(5)])])
    pairs = near_duplicates(copies, copies, *THRESHOLDS, within=True)
    assert all(p.query < p.match for p in pairs) and len({(p.query, p.match) for p in pairs}) == len(pairs)
    assert {(i, 300 + i) for i in range(5)} <= {(p.query, p.match) for p in pairs}
    assert pairs == near_duplicates(copies, copies, *THRESHOLDS, within=True, exact=True)


def test_the_approximate_search_gives_the_same_pairs_every_time(fashion) -> None:
    """Which training rows a run drops depends on the pairs found: the index must not depend on thread timing or
    count (same inputs, same model)."""
    import faiss

    train, _, _ = fashion
    grids = np.stack([grid(Image.fromarray(train[i])) for i in range(6000)])
    first = near_duplicates(grids, grids, *THRESHOLDS, within=True)
    assert len(first) > 10  # Fashion-MNIST holds near-identical products: there is something to compare
    assert near_duplicates(grids, grids, *THRESHOLDS, within=True) == first
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # k-means, lists and search on one thread instead of this machine's all
    try:
        assert near_duplicates(grids, grids, *THRESHOLDS, within=True) == first
    finally:
        faiss.omp_set_num_threads(threads)
    # the split step builds this index on a second thread while its own searches another (the leak search)
    built = index(grids)
    with ThreadPoolExecutor(max_workers=1) as builder:
        lists = builder.submit(candidate_index, built.spectra)
        near_duplicates(grids[:2000], grids[3000:], *THRESHOLDS)  # searching on this thread meanwhile
        assert near_duplicates(grids, grids, *THRESHOLDS, within=True, pool_candidates=lists.result()) == first


def test_the_best_shift_correlation_is_the_definition_computed_directly(fashion) -> None:
    """The verification computes window norms from sums by products with a band of ones: it must equal
    normalising every shifted window and taking its dot product with the candidate's normalised centre crop, for
    thumbnails and edge maps."""
    train, _, test = fashion
    queries = np.stack([grid(shifted(Image.fromarray(test[i]), i % 3, -(i % 2))) for i in range(40)])
    queries[0] = 7.0  # a flat thumbnail: correlates with nothing
    pool_grids = np.stack([grid(Image.fromarray(train[i])) for i in range(200)]).astype(np.uint8)
    pool = index(pool_grids)
    edge_crops, _ = _edge_crops(pool_grids, np.arange(200))
    candidates = np.random.default_rng(0).integers(0, 200, (40, 12))
    inner = THUMBNAIL - 2 * SHIFT
    for grids, crops in ((queries, pool.fine), (_edges(queries), edge_crops)):
        expected = np.full(candidates.shape, -np.inf)
        for q in range(len(grids)):
            for dy in range(2 * SHIFT + 1):
                for dx in range(2 * SHIFT + 1):
                    window = grids[q, dy : dy + inner, dx : dx + inner].astype(np.float64).ravel()
                    centred = window - window.mean()
                    norm = np.linalg.norm(centred)
                    unit = centred / norm if norm > 0 else np.zeros_like(centred)
                    expected[q] = np.maximum(expected[q], crops[candidates[q]] @ unit)
        np.testing.assert_allclose(_best_shift(grids, crops, candidates), expected, atol=1e-5)
    assert (_best_shift(queries, pool.fine, candidates)[0] == 0).all()


def test_the_spectra_are_the_lowest_frequencies_of_the_2d_transform(fashion) -> None:
    """The candidate search transforms only the columns it keeps: the same values as numpy's whole rfft2."""
    train, _, _ = fashion
    grids = np.stack([grid(Image.fromarray(train[i])) for i in range(64)])
    centred = grids - grids.mean((1, 2), keepdims=True)
    whole = np.abs(np.fft.rfft2(centred))
    low = np.concatenate([whole[:, :SPECTRUM, :SPECTRUM], whole[:, -SPECTRUM + 1 :, :SPECTRUM]], axis=1)
    np.testing.assert_allclose(_spectra(grids), _normalised(low.reshape(64, -1)), rtol=1e-5, atol=1e-6)


def test_a_pool_smaller_than_the_candidate_count_is_searched_whole(fashion) -> None:
    """Fewer pool images than candidates per query (the index answers -1 for the rest): nothing invented."""
    train, _, test = fashion
    pool = np.stack([grid(Image.fromarray(test[i])) for i in range(3)])
    queries = np.stack(
        [grid(shifted(Image.fromarray(test[i]), 1, 0)) for i in range(3)] + [grid(Image.fromarray(train[0]))]
    )
    found = {(d.query, d.match) for d in near_duplicates(queries, pool, *THRESHOLDS)}
    assert found == {(0, 0), (1, 1), (2, 2)}


def write_split(root: Path, fashion, planted_as: str | None = None) -> pd.DataFrame:
    """A split table over real files: 10 test images, 60 training images of two classes, plus a brighter copy of
    test image 0 in training (filed under ``planted_as``) and a JPEG pair across the two training classes."""
    train, labels, test = fashion
    rows = []

    def save(image: Image.Image, name: str, label: str, split: str) -> None:
        path = root / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.convert("L").save(path)
        rows.append({"file": str(path), "label": label, "sha256": name, "split": split})

    for i in range(10):
        save(Image.fromarray(test[i]), f"test-{i}.png", "a" if i % 2 else "b", "test")
    for i in range(60):
        save(Image.fromarray(train[i]), f"train-{i}.png", "a" if labels[i] % 2 else "b", "train")
    save(jpeg(Image.fromarray(train[0])), "conflict.jpg", "b" if labels[0] % 2 else "a", "val")
    if planted_as:
        save(ImageEnhance.Brightness(Image.fromarray(test[0])).enhance(1.3), "planted.png", planted_as, "train")
    return pd.DataFrame(rows)


def test_dropping_every_training_image_of_a_class_is_refused_naming_it(tmp_path: Path, fashion) -> None:
    """A class whose only training image is a copy of a test image: dropping it would silently remove the class."""
    table = write_split(tmp_path / "data", fashion, planted_as="only-copies")
    report = find_duplicates(table, HealthParams())
    with pytest.raises(DataError, match=r"\['only-copies'\] without a training image"):
        apply_policy(table, report)


@pytest.mark.parametrize("policy", ["drop", "warn", "fail"])
def test_the_split_step_applies_the_leakage_policy(tmp_path: Path, fashion, policy: str) -> None:
    table = write_split(tmp_path / "data", fashion, planted_as="b")
    params = Params(health={"leakage": policy})
    report = find_duplicates(table, params.health)
    planted = str(tmp_path / "data" / "b" / "planted.png")
    assert [leak["file"] for leak in report.leaks] == [planted]
    assert report.leaks[0]["test_file"] == str(tmp_path / "data" / "b" / "test-0.png")
    # across classes: named (the JPEG copy filed under the other class); the search is symmetric
    assert [{a["file"], a["other_file"]} for a in report.across_classes] == [
        {str(tmp_path / "data" / ("a" if fashion[1][0] % 2 else "b") / "train-0.png"),
         str(next((tmp_path / "data").glob("*/conflict.jpg")))}
    ]  # fmt: skip
    kept = apply_policy(table, report)
    assert (planted in set(kept["file"])) == (policy != "drop")
    assert len(kept) == len(table) - (policy == "drop")
    run = RunFolder(tmp_path / "run")
    ctx = StepContext(params, run, steps_by_name(), tmp_path)
    result = SplitResult(kept, 0, report)
    if policy == "fail":
        with pytest.raises(ValidationFailed, match=r"planted\.png ~ .*test-0\.png"):
            split_step.check(ctx, result)
    else:
        split_step.check(ctx, result)
