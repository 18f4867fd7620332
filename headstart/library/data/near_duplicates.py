"""Near-duplicate images: resized, re-encoded, shifted or brightened copies of one picture.

Perceptual hashes (imagehash's phash, dhash, whash, average hash) were measured first and do not separate these
on small images: on 28 px Fashion-MNIST a 1-pixel shift moves a phash by up to 28 of 64 bits, while 40 % of
distinct images have another within 8 bits. Backbone embeddings did no better (a JPEG q=80 copy fell to a cosine
of 0.68). What does separate them is the correlation of small grayscale thumbnails, normalised per image
(brightness and contrast drop out) and maximised over small shifts:

1. every image becomes a 32x32 grayscale thumbnail (any size in, so resized copies meet);
2. each thumbnail's centre crop is z-normalised; a query's 25 crops shifted by up to 2 px are compared with every
   candidate pool image's centre crop; the 32 candidates per query are those whose low-frequency Fourier
   magnitudes (which a shift leaves alone) are closest, found with a faiss inverted-file index (approximate
   nearest neighbours: each query scans a fixed number of rows, where comparing every image with every other grew
   as n squared and would take days at a million images; :func:`exact_candidates` is the reference it is tested
   against);
3. a pair is a near duplicate when its best correlation reaches the threshold and so does that of the two images'
   gradient magnitudes (texture and seams, where distinct look-alike products differ most).

Measured on Fashion-MNIST (docs/data-health.md, "Near duplicates"): 500 of 500 planted copies found among 8,500
training images; 4.1 % of 1,500 clean test images flagged against them (Fashion-MNIST holds many near-identical
products).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from headstart.library.data.images import open_checked, to_rgb

if TYPE_CHECKING:
    import faiss

THUMBNAIL = 32  # pixels a side
SHIFT = 2  # pixels each way (25 shifts)
SPECTRUM = 8  # lowest Fourier frequencies per axis in the candidate search
CANDIDATES = 32  # pool images verified exactly per query
LIST_SIZE = 128  # faiss IVF: pool images per inverted list on average (lists = pool size / 128)
PROBES = 16  # lists scanned per query: ~2,000 pool rows whatever the pool's size (recall vs. time)
KMEANS_ITERATIONS = 10  # of the lists' spherical k-means, on 32 rows per list at most, seeded
WHOLE_POOL = 4096  # a pool this small is compared whole (exact, and no slower: the leak search's test set)
CHUNK = 256  # queries per step (bounds memory: CHUNK x 25 x 784 windows; the exact search's CHUNK x pool scores)
BLOCK = 4096  # images per step when indexing (bounds the FFT's and gradients' temporaries)


@dataclass(frozen=True)
class NearDuplicate:
    """Query row ``query`` and pool row ``match`` look like copies of one picture (``similarity`` in [-1, 1])."""

    query: int
    match: int
    similarity: float


def thumbnail_of(image: Image.Image) -> np.ndarray:
    """A 32x32 grayscale thumbnail (uint8) of a decoded image; the validator takes it while it decodes anyway."""
    return np.asarray(image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.BILINEAR), dtype=np.uint8)


def thumbnail(path: Path, max_pixels: int = 50_000_000) -> np.ndarray:
    """The thumbnail of the image at ``path`` (decoded again: for files the validator's manifest does not cover)."""
    with open_checked(path, max_pixels) as image:
        return thumbnail_of(to_rgb(image))


def thumbnails(
    paths: Sequence[str | Path], workers: int = 4, known: Mapping[str, np.ndarray] | None = None
) -> np.ndarray:
    """(n, 32, 32) uint8 thumbnails of every path, in order (1 kB an image): from ``known`` (by ``str(path)``)
    where it has them, else decoded (threads: decoding releases the GIL)."""
    known = known or {}
    names = [str(p) for p in paths]
    missing = [name for name in names if name not in known]
    if missing:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            known = {**known, **dict(zip(missing, pool.map(thumbnail, map(Path, missing)), strict=True))}
    if not names:
        return np.zeros((0, THUMBNAIL, THUMBNAIL), np.uint8)
    return np.stack([known[name] for name in names])


def _normalised(crops: np.ndarray) -> np.ndarray:
    """Rows minus their mean, over their norm (a flat crop stays zero: it correlates with nothing)."""
    crops = crops - crops.mean(-1, keepdims=True)
    norms = np.linalg.norm(crops, axis=-1, keepdims=True)
    return np.divide(crops, norms, out=np.zeros_like(crops), where=norms > 0)


def _centre_crops(grids: np.ndarray, shift: int) -> np.ndarray:
    inner = grids.shape[-1] - 2 * shift
    return _normalised(grids[:, shift : shift + inner, shift : shift + inner].reshape(len(grids), -1))


def _spectra(grids: np.ndarray) -> np.ndarray:
    """Shift-invariant descriptors for the candidate search: the magnitudes of the lowest 2-D Fourier frequencies
    of each z-normalised thumbnail (a shift changes only the phases), normalised."""
    centred = grids - grids.mean((1, 2), keepdims=True)
    # rfft2 is rfft along rows, then fft down each column: only the SPECTRUM lowest columns are transformed twice
    columns = np.fft.fft(np.fft.rfft(centred, axis=2)[:, :, :SPECTRUM], axis=1)
    low = np.abs(np.concatenate([columns[:, :SPECTRUM], columns[:, -SPECTRUM + 1 :]], axis=1))
    return _normalised(low.reshape(len(grids), -1)).astype(np.float32)


def _edges(grids: np.ndarray) -> np.ndarray:
    """Gradient magnitude: texture and seams, where distinct look-alike products differ most."""
    dy, dx = np.gradient(grids, axis=(1, 2))
    return np.hypot(dy, dx)


def _best_shift(queries: np.ndarray, pool_crops: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(queries, candidates): the best correlation over the query's shifts with each candidate's centre crop.

    The candidates' crops are normalised (zero mean, unit norm), so a raw shifted crop's dot product with one
    equals its centred crop's: only each window's norm is needed, not a normalised copy of every window.
    """
    inner = THUMBNAIL - 2 * SHIFT
    windows = sliding_window_view(queries, (inner, inner), axis=(1, 2)).reshape(len(queries), -1, inner * inner)
    sums, squares = _window_sums(queries, inner), _window_sums(np.square(queries, dtype=np.float64), inner)
    norms = np.sqrt(np.maximum(squares - sums**2 / windows.shape[-1], 0))
    dots = np.matmul(windows, pool_crops[candidates].transpose(0, 2, 1))  # batched BLAS: (queries, shifts, k)
    return (dots / np.where(norms > 0, norms, np.inf)[..., None]).max(1)


def _window_sums(grids: np.ndarray, inner: int) -> np.ndarray:
    """(n, shifts): the sum of every ``inner`` x ``inner`` window of each grid, in float64, as two products with a
    band of ones (rows, then columns): a few hundred multiply-adds a grid instead of adding each window's 784
    values, which was half of the verification's time (and 40x faster than summed-area tables by cumsum)."""
    size = grids.shape[-1]
    offsets = np.arange(size)[None, :] - np.arange(size - inner + 1)[:, None]
    band = ((offsets >= 0) & (offsets < inner)).astype(np.float64)  # (shifts a side, size)
    return (band @ grids.astype(np.float64, copy=False) @ band.T).reshape(len(grids), -1)


@dataclass(frozen=True)
class Index:
    """What the search needs of a set of thumbnails, ~3.6 kB an image (904 floats): normalised centre crops (the
    exact check) and low-frequency spectra (the candidate search). The edge maps' crops are made only for the few
    pool images a query's thumbnail already matches (:func:`_edge_crops`)."""

    fine: np.ndarray
    spectra: np.ndarray


def index(grids: np.ndarray) -> Index:
    """The :class:`Index` of (n, 32, 32) thumbnails, built :data:`BLOCK` images at a time into arrays allocated
    once, so the temporaries (float copies, FFTs) never span the whole dataset and the index is never held twice
    (concatenating the blocks did: ~7 kB an image more at the peak)."""
    inner, low = (THUMBNAIL - 2 * SHIFT) ** 2, (2 * SPECTRUM - 1) * SPECTRUM
    built = Index(*(np.empty((len(grids), width), np.float32) for width in (inner, low)))
    for start in range(0, len(grids), BLOCK):
        block = grids[start : start + BLOCK].astype(np.float32)
        rows = slice(start, start + len(block))
        built.fine[rows] = _centre_crops(block, SHIFT)
        built.spectra[rows] = _spectra(block)
    return built


def _edge_crops(pool: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normalised centre crops of the edge maps of the pool images ``candidates`` names, and ``candidates``
    renumbered into them."""
    needed, renumbered = np.unique(candidates, return_inverse=True)
    crops = _centre_crops(_edges(pool[needed].astype(np.float32)), SHIFT)
    return crops, renumbered.reshape(candidates.shape)


def exact_candidates(queries: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """(len(queries), k) pool rows with the highest inner product per query row, every pair compared: the
    reference the approximate search is measured against (O(queries x pool))."""
    parts = [
        np.argpartition(-(queries[start : start + CHUNK] @ pool.T), k - 1, axis=1)[:, :k]
        for start in range(0, len(queries), CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, k), np.int64)


def candidate_index(pool: np.ndarray) -> faiss.IndexIVFFlat:
    """A faiss inverted-file index of the pool's rows (inner product), for :func:`approximate_candidates`: the rows
    are split into ``len(pool) / LIST_SIZE`` lists by a seeded spherical k-means, and a query scans the
    :data:`PROBES` lists whose centres are nearest, a fixed number of rows whatever the pool's size.

    Every step is exact arithmetic on fixed inputs (the k-means sample and start are drawn from its seed, each row
    goes to its nearest centre), so the same pool gives the same index and the same pairs on any thread count: the
    near duplicates found decide which training rows a run drops (same inputs, same model).
    """
    import faiss

    rows = np.ascontiguousarray(pool, dtype=np.float32)
    lists = max(1, len(rows) // LIST_SIZE)
    found = faiss.IndexIVFFlat(faiss.IndexFlatIP(rows.shape[1]), rows.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    found.cp.seed, found.cp.niter, found.cp.spherical = 0, KMEANS_ITERATIONS, True
    found.cp.max_points_per_centroid = 32  # the k-means sample: its cost grows with the lists, not the rows
    found.train(rows)
    found.add(rows)
    found.nprobe = min(PROBES, lists)
    return found


def approximate_candidates(
    queries: np.ndarray, pool: np.ndarray, k: int, pool_index: faiss.IndexIVFFlat | None = None
) -> np.ndarray:
    """The same, from a faiss index of the pool (``pool_index`` when the caller built it, else built now); -1
    where the lists scanned hold fewer than ``k`` rows. Searching runs on every thread."""
    pool_index = pool_index if pool_index is not None else candidate_index(pool)
    _, rows = pool_index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return rows


def _without_self(candidates: np.ndarray, k: int) -> np.ndarray:
    """``k`` of each row's ``k + 1`` candidates, its own row dropped (or, where the search missed it, the last)."""
    itself = candidates == np.arange(len(candidates))[:, None]
    return np.take_along_axis(candidates, np.argsort(itself, axis=1, kind="stable"), axis=1)[:, :k]


def near_duplicates(
    queries: np.ndarray,
    pool: np.ndarray,
    threshold: float,
    edge_threshold: float = 0.96,
    within: bool = False,
    query_index: Index | None = None,
    pool_index: Index | None = None,
    pool_candidates: faiss.IndexIVFFlat | None = None,
    exact: bool = False,
) -> list[NearDuplicate]:
    """Pairs (query row, pool row) whose thumbnails correlate at ``threshold`` or more, and their edge maps at
    ``edge_threshold`` or more, at some shift of up to 2 px.

    ``within``: ``queries`` is ``pool`` itself; each pair is reported once and no image matches itself.
    ``query_index``, ``pool_index``: their :func:`index` when the caller has it (one dataset searched twice).
    ``pool_candidates``: the :func:`candidate_index` of ``pool_index.spectra`` when the caller built it.
    ``exact``: candidates from every pair's spectra (:func:`exact_candidates`), the reference for tests; another
    set's pool of at most :data:`WHOLE_POOL` images is always searched so (60,000 training images against 1,000
    test images: exact, and no slower). A search within one set always goes through the index, which the tests
    compare with the exact search.
    """
    if len(queries) == 0 or len(pool) == 0:
        return []
    pool_index = pool_index or index(pool)
    query_spectra = (pool_index if within else query_index or index(queries)).spectra
    k = min(CANDIDATES, len(pool) - (1 if within else 0))
    if k <= 0:
        return []
    if exact or (not within and len(pool) <= WHOLE_POOL and pool_candidates is None):
        all_candidates = exact_candidates(query_spectra, pool_index.spectra, k + within)
    else:
        all_candidates = approximate_candidates(query_spectra, pool_index.spectra, k + within, pool_candidates)
    if within:
        all_candidates = _without_self(all_candidates, k)
    found: list[NearDuplicate] = []
    for start in range(0, len(queries), CHUNK):
        candidates = all_candidates[start : start + CHUNK]
        missing = candidates < 0  # the lists scanned held fewer than k
        candidates = np.where(missing, 0, candidates)
        chunk = queries[start : start + CHUNK].astype(np.float32)
        best = _best_shift(chunk, pool_index.fine, candidates)
        rows, columns = np.nonzero((best >= threshold) & ~missing)
        if len(rows):  # the edge check only for the pairs whose thumbnails already correlate (few)
            crops, renumbered = _edge_crops(pool, candidates[rows, columns][:, None])
            edges_match = _best_shift(_edges(chunk[rows]), crops, renumbered)[:, 0] >= edge_threshold
            rows, columns = rows[edges_match], columns[edges_match]
        for row, column in zip(rows, columns, strict=True):
            found.append(NearDuplicate(start + int(row), int(candidates[row, column]), float(best[row, column])))
    if within:  # a pair may be found from both sides: kept once, as (lower row, higher row)
        pairs: dict[tuple[int, int], float] = {}
        for d in found:
            key = (min(d.query, d.match), max(d.query, d.match))
            pairs[key] = max(pairs.get(key, -1.0), d.similarity)
        found = [NearDuplicate(a, b, s) for (a, b), s in sorted(pairs.items())]
    return found
