"""The feature store: per-image features, content-addressed, capped with least-recently-used eviction, safe
under concurrent writers, refusing to unpickle, and only a cache (deleting or breaking it loses only time)."""

from __future__ import annotations

import multiprocessing
import pickle
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.transforms import Preprocessing
from headstart.library.evaluation.metrics import evaluate
from headstart.library.training.feature_store import Extractor, FeatureStore
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
PRE = Preprocessing(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")


def params(store: Path, *overrides: str):
    common = [
        "train.num_workers=0",
        "model.features_input_size=32",
        "train.scenario=features",
        f"train.feature_cache={store}",
    ]
    return load_params(REPO_PARAMS, [*common, *overrides])


def vectors(names: list[str], width: int = 1280, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic vectors per name (what a worker process can recompute to check another's writes)."""
    return {n: np.random.default_rng([seed, int(n, 16) % 2**32]).random(width, dtype=np.float32) for n in names}


def shas(count: int, start: int = 0) -> list[str]:
    return [f"{i:064x}" for i in range(start, start + count)]


def first_rows(split):
    """The rows training extracts features of."""
    return split[split["split"].isin(["train", "val"])]


def test_a_new_data_version_extracts_only_its_new_images_and_evaluation_reuses_the_test_set(tiny_split, tmp_path):
    (_, first), (_, grown) = tiny_split(12, 5, 1), tiny_split(14, 5, 1)  # the same seed: 14/class ⊃ 12/class
    new = set(first_rows(grown)["sha256"]) - set(first_rows(first)["sha256"])
    assert len(new) == 20
    store = tmp_path / "store"
    v1 = train(first, params(store), RunFolder(tmp_path / "v1"), {"data_md5": "v1"})
    assert v1.features_extracted == len(first_rows(first))
    v2 = train(grown, params(store), RunFolder(tmp_path / "v2"), {"data_md5": "v2"})
    assert v2.features_extracted == len(new)  # the data version changed; only its new images were extracted
    # another classifier on the same data: nothing extracted; another input size: everything again
    assert train(grown, params(store, "train.classifier=rbf_svm"), RunFolder(tmp_path / "v3"), {}).features_from_cache
    assert not train(
        grown, params(store, "model.features_input_size=48"), RunFolder(tmp_path / "v4"), {}
    ).features_from_cache

    store_obj = FeatureStore(store, 10**9)
    direct = evaluate(v2.model_dir, grown)  # no store: every test image through the network
    stored_first = evaluate(v2.model_dir, grown, store=store_obj)
    stored_again = evaluate(v1.model_dir, grown, store=store_obj)  # the champion, same backbone: all from the store
    assert stored_first.predicted == direct.predicted and stored_first.metrics == direct.metrics
    assert stored_again.metrics["test_images"] == 50
    before = store_obj.volume()
    evaluate(v1.model_dir, grown, store=store_obj)
    assert store_obj.volume() == before  # nothing new was written: the test set was read back


def test_least_recently_used_features_are_evicted_above_the_cap(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store", 900_000)
    a, b, c = (Extractor("m", f"weights-{n}", PRE, "avg") for n in "abc")
    store.save(a, vectors(shas(60)))  # ~310 kB each
    store.save(b, vectors(shas(60)))
    assert len(store.lookup(a, shas(60))) == 60  # a is read: now b is the least recently used
    store.save(c, vectors(shas(60)))
    assert store.volume() <= 900_000
    assert len(store.lookup(a, shas(60))) == 60 and len(store.lookup(c, shas(60))) == 60
    assert len(store.lookup(b, shas(60))) < 60  # b went first
    kept = store.lookup(a, shas(60))
    assert all(np.array_equal(kept[n], v) for n, v in vectors(shas(60)).items())


def _writer(directory: str, seed: int, names: list[str], start, done) -> None:
    start.wait()
    store = FeatureStore(Path(directory), 10**9)
    extractor = Extractor("m", "w", PRE, "avg")
    for chunk in range(0, len(names), 100):  # many small saves, interleaving with the other process's
        store.save(extractor, vectors(names[chunk : chunk + 100], seed=seed))
    done.put(seed)


def test_two_processes_writing_at_once_leave_every_entry_whole(tmp_path: Path) -> None:
    """Two runs extracting overlapping images at the same time: both finish, every entry is one writer's whole
    vector (same image, same extractor: same vector, as here), nothing torn."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Barrier(2), context.Queue()
    names = shas(1500)
    workers = [
        context.Process(target=_writer, args=(str(tmp_path / "store"), 0, names[: 1000 + 500 * i], start, done))
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0] and sorted([done.get(), done.get()]) == [0, 0]
    found = FeatureStore(tmp_path / "store", 10**9).lookup(Extractor("m", "w", PRE, "avg"), names)
    expected = vectors(names)
    assert len(found) == 1500 and all(np.array_equal(found[n], expected[n]) for n in names)


def _store_db(directory: Path) -> sqlite3.Connection:
    return sqlite3.connect(directory / "cache.db")


def test_a_damaged_entry_is_extracted_again_and_a_pickled_one_is_never_unpickled(tiny_split, tmp_path, caplog):
    _, split = tiny_split(12, 5, 1)
    store = tmp_path / "store"
    first = train(split, params(store), RunFolder(tmp_path / "r1"), {})
    with _store_db(store) as db:
        rowid, value = db.execute("SELECT rowid, value FROM Cache ORDER BY rowid LIMIT 1").fetchone()
        flipped = bytearray(value)
        flipped[-5] ^= 0xFF  # inside the vector: only the checksum can tell
        db.execute("UPDATE Cache SET value = ? WHERE rowid = ?", (bytes(flipped), rowid))
    with caplog.at_level("WARNING"):
        again = train(split, params(store), RunFolder(tmp_path / "r2"), {})
    assert again.features_extracted == 1 and "1 entries do not match their checksum" in caplog.text
    assert train(split, params(store), RunFolder(tmp_path / "r3"), {}).features_from_cache  # whole again
    assert first.history == again.history

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_TouchOnUnpickle(str(marker)))
    with _store_db(store) as db:  # a tampered store: one row in diskcache's pickle mode (mode 4)
        db.execute("UPDATE Cache SET value = ?, mode = 4 WHERE rowid = ?", (payload, rowid))
    caplog.clear()
    with caplog.at_level("WARNING"):
        tampered = train(split, params(store), RunFolder(tmp_path / "r4"), {})
    assert not marker.exists()  # nothing was unpickled
    assert "refusing to unpickle" in caplog.text and tampered.features_extracted == len(first_rows(split))


class _TouchOnUnpickle:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_deleting_or_breaking_the_store_costs_only_time(tiny_split, tmp_path, caplog) -> None:
    _, split = tiny_split(12, 5, 1)
    store = tmp_path / "store"
    first = train(split, params(store), RunFolder(tmp_path / "r1"), {})
    shutil.rmtree(store)
    again = train(split, params(store), RunFolder(tmp_path / "r2"), {})
    assert again.features_extracted == first.features_extracted and again.history == first.history
    shutil.rmtree(store)
    store.write_text("not a folder")  # unopenable: the run goes on without a store, and says so
    with caplog.at_level("WARNING"):
        broken = train(split, params(store), RunFolder(tmp_path / "r3"), {})
    assert broken.history == first.history and f"feature store {store}" in caplog.text
    assert store.read_text() == "not a folder"


def test_the_store_holds_bytes_only() -> None:
    from headstart.library.training.feature_store import _VectorDisk

    with pytest.raises(TypeError, match="holds bytes"):
        _VectorDisk("/nonexistent").store({"a": 1}, False)


def test_entries_of_the_wrong_width_are_damaged_even_with_a_valid_checksum(tiny_split, tmp_path, caplog) -> None:
    from headstart.library.training.feature_store import _encode

    _, split = tiny_split(12, 5, 1)
    store = tmp_path / "store"
    first = train(split, params(store), RunFolder(tmp_path / "r1"), {})
    with _store_db(store) as db:  # every entry: 10 floats, correctly checksummed (a foreign or edited store)
        rows = db.execute("SELECT rowid FROM Cache").fetchall()
        narrow = _encode(np.arange(10, dtype=np.float32))
        db.executemany("UPDATE Cache SET value = ? WHERE rowid = ?", [(narrow, rowid) for (rowid,) in rows])
    with caplog.at_level("WARNING"):
        again = train(split, params(store), RunFolder(tmp_path / "r2"), {})
    assert "entries do not match their checksum or are not 1280 wide; extracting them again" in caplog.text
    assert again.features_extracted == len(first_rows(split)) and again.history == first.history
