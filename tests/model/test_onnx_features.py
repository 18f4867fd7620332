"""Features through ONNX Runtime (the default engine on the CPU): torch's features, kept apart in the store,
independent of the batch, exported once per machine, and torch again wherever an export does not match."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from headstart.library.training import onnx_features
from headstart.library.training.feature_store import ENGINE, FeatureStore
from headstart.library.training.features import extract, features_for, frozen_backbone

pytestmark = pytest.mark.slow  # one ONNX export (~10 s)


@pytest.fixture
def default_engine(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """The shipped engine choice (the suite runs torch), with its own cache of exports."""
    monkeypatch.setenv(onnx_features.ENGINE_VARIABLE, "auto")
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(onnx_features, "_sessions", {})  # this process's loaded sessions: none yet
    return tmp_path / "cache" / "onnx-features"


def test_onnx_runtime_gives_torchs_features_stored_apart_and_exports_once(default_engine, tiny_split, tmp_path):
    _, split = tiny_split(4, 2, 3)
    model, extractor = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 48, "avg")
    store = FeatureStore(tmp_path / "store", 10**9)
    onnx = features_for(model, split, extractor, store, 16, 0, "cpu")
    assert onnx.extracted == len(split) and len(list(default_engine.glob("*.onnx"))) == 1
    assert onnx.engine == "onnxruntime"
    torch_made = extract(model, split, extractor, 16, 0, "cpu")  # no session: torch's forward
    scale = np.abs(torch_made).max()
    assert np.abs(onnx.features - torch_made).max() <= onnx_features.TOLERANCE * scale
    assert not np.array_equal(onnx.features, torch_made)  # really another engine, not torch under another name
    # kept apart: torch's key finds nothing; ONNX Runtime's finds every image
    shas = split["sha256"].tolist()
    assert store.lookup(replace(extractor, device="cpu"), shas) == {}
    assert len(store.lookup(replace(extractor, device=ENGINE), shas)) == len(set(shas))
    # independent of how images are batched (the store assumes a vector does not depend on its run)
    session = onnx_features.cpu_session(model, extractor)
    assert np.array_equal(extract(model, split, extractor, 5, 0, "cpu", session), onnx.features)
    # in-process batches are stacked into one kept buffer; a loader worker's come through torch's own collate
    assert np.array_equal(extract(model, split, extractor, 5, 1, "cpu", session), onnx.features)
    # a new process (no loaded session) reads the export back instead of exporting again
    exported = next(default_engine.glob("*.onnx"))
    before = exported.stat().st_mtime_ns
    onnx_features._sessions.clear()
    again = features_for(model, split, extractor, FeatureStore(tmp_path / "fresh-store", 10**9), 16, 0, "cpu")
    assert np.array_equal(again.features, onnx.features) and exported.stat().st_mtime_ns == before


def test_an_export_that_does_not_match_torch_is_refused_once_and_torch_extracts(
    default_engine, tiny_split, tmp_path, monkeypatch
):
    _, split = tiny_split(4, 2, 3)
    model, extractor = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 40, "avg")
    monkeypatch.setattr(onnx_features, "TOLERANCE", 0.0)  # no export can be exactly torch's: every one mismatches
    store = FeatureStore(tmp_path / "store", 10**9)
    found = features_for(model, split, extractor, store, 16, 0, "cpu")
    assert np.array_equal(found.features, extract(model, split, extractor, 16, 0, "cpu"))  # torch's own
    assert list(default_engine.glob("*.onnx")) == [] and len(list(default_engine.glob("*.refused"))) == 1
    assert "differs from torch" in next(default_engine.glob("*.refused")).read_text()
    assert len(store.lookup(replace(extractor, device="cpu"), split["sha256"].tolist())) == len(set(split["sha256"]))
    # remembered: the next process does not try again (a new attempt would rewrite the refusal), still torch
    refusal = next(default_engine.glob("*.refused"))
    written = refusal.stat().st_mtime_ns
    onnx_features._sessions.clear()
    assert onnx_features.cpu_session(model, extractor) is None
    assert refusal.stat().st_mtime_ns == written and list(default_engine.glob("*.onnx")) == []


def test_an_unknown_engine_is_named(monkeypatch) -> None:
    from headstart.ground.errors import ConfigError

    monkeypatch.setenv(onnx_features.ENGINE_VARIABLE, "tensorrt")
    model, extractor = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 32, "avg")
    with pytest.raises(ConfigError, match="HEADSTART_FEATURE_ENGINE='tensorrt'"):
        onnx_features.cpu_session(model, extractor)


def test_a_cache_that_cannot_be_written_costs_only_speed(default_engine, tiny_split, tmp_path) -> None:
    """A file where the exports' folder should be (as a full or read-only disk would): torch extracts, the run
    goes on, the features are keyed as torch's, and nothing half-written is left beside."""
    _, split = tiny_split(4, 2, 3)
    model, extractor = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 36, "avg")
    default_engine.parent.mkdir(parents=True)
    default_engine.write_text("not a folder")
    store = FeatureStore(tmp_path / "store", 10**9)
    found = features_for(model, split, extractor, store, 16, 0, "cpu")
    assert np.array_equal(found.features, extract(model, split, extractor, 16, 0, "cpu"))
    assert len(store.lookup(replace(extractor, device="cpu"), split["sha256"].tolist())) == len(set(split["sha256"]))
    assert default_engine.read_text() == "not a folder" and sorted(default_engine.parent.iterdir()) == [default_engine]


def test_a_failing_onnx_runtime_run_falls_back_to_torch_and_stores_only_torchs_vectors(
    default_engine, tiny_split, tmp_path
) -> None:
    """A real ONNX Runtime failure mid-extraction (a session exported for 48 px given 64 px batches): the run
    gets torch's features, and nothing is stored under ONNX Runtime's key."""
    import torch

    _, split = tiny_split(4, 2, 3)
    model, small = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 48, "avg")
    wrong_size = onnx_features.cpu_session(model, small)
    assert wrong_size is not None
    model, large = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 64, "avg")
    onnx_id = replace(large, device=ENGINE).id
    onnx_features._sessions[(onnx_id, torch.get_num_threads())] = wrong_size  # what this process has loaded
    store = FeatureStore(tmp_path / "store", 10**9)
    got = features_for(model, split, large, store, 16, 0, "cpu")
    assert np.array_equal(got.features, extract(model, split, large, 16, 0, "cpu"))  # torch's, bit for bit
    assert got.engine == "torch"  # what the model's lineage records
    shas = split["sha256"].tolist()
    assert store.lookup(replace(large, device=ENGINE), shas) == {}
    assert len(store.lookup(replace(large, device="cpu"), shas)) == len(set(shas))
    assert onnx_features._sessions[(onnx_id, torch.get_num_threads())] is None  # the next extraction: torch at once


def test_a_shortage_is_not_remembered_as_a_refusal() -> None:
    """Out of memory or disk while exporting says nothing about the network: the next run exports again."""
    assert onnx_features._shortage(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory"))
    assert onnx_features._shortage(MemoryError()) and onnx_features._shortage(OSError(28, "No space left"))
    assert not onnx_features._shortage(ValueError("differs from torch by 3.1e-02 of the largest feature"))


def test_the_exported_graph_normalises_pixels_as_the_eval_transform_does(tiny_split) -> None:
    """ONNX Runtime is fed resized uint8 pixels and normalises in its graph: the graph's torch module on those
    pixels gives the features of the eval transform's normalised images (what torch's path extracts)."""
    import torch

    from headstart.library.data.loader import ImageTable
    from headstart.library.data.transforms import build_transform
    from headstart.library.models.backbones import pooled_features

    _, split = tiny_split(3, 2, 3)
    model, extractor = frozen_backbone("tf_efficientnet_lite0", "package:efficientnet-lite0", 40, "avg")
    labels = sorted(set(split["label"]))
    normalised = ImageTable(split, labels, build_transform(extractor.pre))
    resized = ImageTable(split, labels, build_transform(extractor.pre, normalise=False))
    images = torch.stack([normalised[i][0] for i in range(len(split))])
    pixels = torch.stack([torch.as_tensor(resized[i][0]) for i in range(len(split))])
    assert pixels.dtype == torch.uint8 and pixels.shape[1:] == (40, 40, 3)
    with torch.inference_mode():
        expected = pooled_features(model.eval(), images, extractor.stages, extractor.pool)
        found = onnx_features._Features(model, extractor)(pixels)
    assert torch.allclose(found, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))
