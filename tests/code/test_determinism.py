"""The parts of reproducibility that need no training: torch's deterministic mode on and off again, skops archives
that repeat bit for bit, the rebuild's verdicts, and reproduction records that a reader trusts only when sound."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from headstart.library.evaluation.reproduction import compare_rebuild, environment_differences
from headstart.library.registry.registry import Registry
from headstart.library.registry.reproductions import latest_outcome, record_reproduction, reproductions
from headstart.library.storage.backends import LocalStorage

ENVIRONMENT = {"device": "cpu", "precision": "fp32", "threads": 2, "world_size": 1, "deterministic": False}
LINEAGE = {"environment": ENVIRONMENT, "lock_sha256": "l" * 64, "packages": {"torch": "2.9", "headstart": "0.1"}}
METRICS = {"accuracy": 0.8, "macro_f1": 0.75, "per_class": {"a": {"precision": 0.8, "recall": 0.9, "f1": 0.85}}}


def test_deterministic_mode_is_on_only_inside_and_sets_cublas_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from headstart.library.training.determinism import CUBLAS_WORKSPACE, deterministic_algorithms

    monkeypatch.delenv(CUBLAS_WORKSPACE, raising=False)
    with deterministic_algorithms(False, "cpu"):
        assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms(True, "cuda"):
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark and os.environ[CUBLAS_WORKSPACE] == ":4096:8"
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic
    assert CUBLAS_WORKSPACE not in os.environ  # the process is as it was


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def test_a_classifier_fitted_twice_is_written_as_the_same_bytes_and_loads_the_same(tmp_path: Path) -> None:
    import skops.io as sio

    from headstart.library.models.classical import load_classifier, make_classifier, save_classifier

    x = np.random.default_rng(0).random((40, 5))
    y = np.arange(40) % 4
    fitted = [make_classifier(name, 1.0, 0).fit(x, y) for name in ("logreg", "logreg", "random_forest")]
    assert sio.dumps(fitted[0]) != sio.dumps(fitted[1])  # skops alone: ids and times differ
    written = [save_classifier(model, folder(tmp_path / str(n))).read_bytes() for n, model in enumerate(fitted)]
    assert written[0] == written[1] != written[2]
    loaded = load_classifier(tmp_path / "2")
    assert np.array_equal(loaded.predict_proba(x), fitted[2].predict_proba(x))


def test_the_verdict_is_bitwise_only_in_the_recorded_environment() -> None:
    files = {"model.safetensors": "w" * 64}
    same = environment_differences(LINEAGE, LINEAGE)
    assert same == {}
    assert compare_rebuild(files, files, METRICS, METRICS, same, 0.02)["verdict"] == "identical"
    assert compare_rebuild(files, {"model.safetensors": "x" * 64}, METRICS, METRICS, same, 0.02)["verdict"] == (
        "not reproduced"  # the same environment promises the same bits
    )
    threads = environment_differences(LINEAGE, {**LINEAGE, "environment": {**ENVIRONMENT, "threads": 1}})
    assert threads == {"threads": {"recorded": 2, "rebuilt": 1}}
    close = {**METRICS, "accuracy": 0.79}
    outcome = compare_rebuild(files, files, METRICS, close, threads, 0.02)
    assert outcome["verdict"] == "within tolerance" and outcome["mode"] == "tolerance"  # equal files: still not
    assert outcome["metrics"]["accuracy"]["delta"] == pytest.approx(-0.01)
    assert compare_rebuild(files, files, METRICS, {**METRICS, "accuracy": 0.7}, threads, 0.02)["verdict"] == (
        "not reproduced"
    )
    packages = environment_differences(LINEAGE, {**LINEAGE, "packages": {"torch": "2.10", "headstart": "0.2"}})
    assert list(packages) == ["packages"] and list(packages["packages"]) == ["torch"]
    engine = environment_differences(LINEAGE, {**LINEAGE, "environment": {**ENVIRONMENT, "feature_engine": "torch"}})
    assert engine == {"feature_engine": {"recorded": None, "rebuilt": "torch"}}  # features differ in the last bits
    fast_cuda = {**LINEAGE, "environment": {**ENVIRONMENT, "device": "cuda"}}
    assert "deterministic" in environment_differences(fast_cuda, fast_cuda)  # CUDA repeats only when asked to
    exact = {**LINEAGE, "environment": {**ENVIRONMENT, "device": "cuda", "deterministic": True}}
    assert environment_differences(exact, exact) == {}


@pytest.mark.parametrize("signing", [False, True], ids=["unsigned", "signed"])
def test_only_sound_reproduction_records_are_read(tmp_path: Path, signing: bool) -> None:
    key = b"k" if signing else None
    registry = Registry(LocalStorage(tmp_path), "demo", key)
    version, other = "20261203T000000000000Z-00000001", "20261203T000000000000Z-00000002"
    assert latest_outcome(registry, version) is None
    record_reproduction(registry, version, {"at": "2026-12-03T10:00:00+00:00", "verdict": "identical"})
    folder = f"demo/reproductions/{version}/"
    registry.storage.put(folder + "20991203T110000000000Z-0000000a.json", b'{"at": "trunc')  # damaged
    moved = {"model": "demo", "version": other, "at": "2026-12-04T00:00:00+00:00", "verdict": "identical"}
    registry.storage.put(folder + "20991203T120000000000Z-0000000b.json", json.dumps(moved).encode())  # other's
    forged = {"model": "demo", "version": version, "at": "2026-12-05T00:00:00+00:00", "verdict": "identical"}
    registry.storage.put(folder + "20991203T130000000000Z-0000000c.json", json.dumps(forged).encode())  # no key
    odd = {"model": "demo", "version": version, "at": "2026-12-06T00:00:00+00:00", "verdict": "identical",
           "metrics": {"accuracy": {"delta": "a lot"}}}  # fmt: skip
    if key:
        from headstart.library.registry.signing import sign

        odd["signature"] = sign(odd, key)  # signed, but not what reproduce writes: a reader must not choke on it
    registry.storage.put(folder + "20991203T140000000000Z-0000000d.json", json.dumps(odd).encode())
    read = reproductions(registry, version)
    assert [r["at"] for r in read] == (["2026-12-03T10:00:00+00:00"] if signing else
                                       ["2026-12-03T10:00:00+00:00", "2026-12-05T00:00:00+00:00"])  # fmt: skip
    assert latest_outcome(registry, version) == f"reproduced on {read[-1]['at'][:10]}: identical"
    with pytest.raises(Exception, match="not a version id"):
        reproductions(registry, "../../etc")
