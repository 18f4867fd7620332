"""The registry on both backends: immutable versions closed by a manifest, verified pulls, the champion alias as
a create-only sequence; and the faults: a hung S3, racing promotions, tampering, rollback."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from headstart.library.registry.errors import PromotionConflict, RegistryError
from headstart.library.registry.pulling import PULL_MARKER
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import S3Storage, StorageError, make_s3_client
from tests.support.versions import FILES


def test_versions_are_closed_by_a_manifest(registry: Registry) -> None:
    v1 = registry.register(FILES, {"decision": "PASS", "metrics": {"accuracy": 0.8}})
    v2 = registry.register({**FILES, "model.safetensors": b"other"}, {"decision": "FAIL"})
    manifests = registry.versions()
    assert [m["version"] for m in manifests] == sorted([v1, v2])
    assert manifests[0]["files"]["model.safetensors"] == hashlib.sha256(b"weights-bytes").hexdigest()
    # a version whose manifest never got written (a crash mid-upload) is never listed or usable
    registry.storage.put("demo/versions/29990101T000000000000Z-deadbeef/model.safetensors", b"half")
    assert [m["version"] for m in registry.versions()] == sorted([v1, v2])
    with pytest.raises(RegistryError, match="no complete version"):
        registry.pull("29990101T000000000000Z-deadbeef", Path("unused"))


def test_pull_verifies_every_file_and_refuses_tampering(registry: Registry, tmp_path: Path) -> None:
    version = registry.register(FILES, {})
    pulled = registry.pull(version, tmp_path / "pulled")
    assert {p.name: p.read_bytes() for p in pulled.iterdir() if p.name != PULL_MARKER} == FILES
    registry.storage.put(f"demo/versions/{version}/model.safetensors", b"tampered")  # behind the registry's back
    with pytest.raises(RegistryError, match=r"model.safetensors: sha256 does not match the manifest; refused"):
        registry.pull(version, tmp_path / "again")
    assert not (tmp_path / "again").exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_champion_history_and_rollback(registry: Registry) -> None:
    v1, v2 = registry.register(FILES, {}), registry.register(FILES, {})
    assert registry.champion() is None
    with pytest.raises(RegistryError, match="no champion"):
        registry.resolve("champion")
    registry.set_champion(v1, "promote", "first")
    registry.set_champion(v2, "promote", "better")
    assert registry.champion() == v2
    restored = registry.rollback()
    assert (restored.version, restored.action, restored.seq) == (v1, "rollback", 3)
    assert [(r.seq, r.version) for r in registry.history()] == [(1, v1), (2, v2), (3, v1)]
    assert registry.rollback(to=v2).version == v2 and registry.champion() == v2
    with pytest.raises(RegistryError, match="no complete version"):
        registry.set_champion("29990101T000000000000Z-deadbeef", "promote", "")


def test_a_stale_promotion_loses_and_is_recorded(registry: Registry) -> None:
    v1, v2, v3 = (registry.register(FILES, {}) for _ in range(3))
    registry.set_champion(v1, "promote", "first")
    slow = registry.next_alias(v2, "promote", "slow writer")  # read latest = 1, will write 2
    registry.set_champion(v3, "promote", "fast writer")  # takes 2 first
    with pytest.raises(PromotionConflict, match="#2 was taken"):
        registry.commit_alias(slow)
    assert registry.champion() == v3
    [conflict] = registry.conflicts()
    assert conflict["attempt"]["version"] == v2 and conflict["attempt"]["seq"] == 2


def test_racing_promotions_never_both_win(registry: Registry) -> None:
    versions = [registry.register(FILES, {}) for _ in range(4)]
    for _ in range(3):
        barrier, outcomes = threading.Barrier(len(versions)), []

        def promote(version: str, barrier=barrier, outcomes=outcomes) -> None:
            barrier.wait()
            try:
                outcomes.append(("won", registry.set_champion(version, "promote", "race").seq))
            except PromotionConflict:
                outcomes.append(("lost", None))

        threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
        [t.start() for t in threads]
        [t.join() for t in threads]
        won = [seq for outcome, seq in outcomes if outcome == "won"]
        assert len(won) == len(set(won)) >= 1  # no alias number ever has two writers
    history = registry.history()
    assert [r.seq for r in history] == list(range(1, len(history) + 1))
    assert len(history) + len(registry.conflicts()) == 3 * len(versions)  # every attempt is on record


def test_hung_s3_during_promotion_fails_clearly_and_changes_nothing(seaweedfs, bucket: str) -> None:
    client = make_s3_client(attempts=2, read_timeout=1)  # short, so the test does not wait out production timeouts
    registry = Registry(S3Storage(bucket, "registry", client=client), "demo")
    v1, v2 = registry.register(FILES, {}), registry.register(FILES, {})
    registry.set_champion(v1, "promote", "first")
    seaweedfs.freeze()
    try:
        with pytest.raises(StorageError, match="failed after retries"):
            registry.set_champion(v2, "promote", "during the outage")
    finally:
        seaweedfs.thaw()
    assert registry.champion() == v1 and len(registry.history()) == 1


def test_upload_cut_off_midway_leaves_no_listed_version(seaweedfs, bucket: str) -> None:
    class FreezesAfterTwoPuts(S3Storage):
        puts = 0

        def put(self, key: str, data: bytes, *, create_only: bool = False) -> None:
            super().put(key, data, create_only=create_only)
            FreezesAfterTwoPuts.puts += 1
            if FreezesAfterTwoPuts.puts == 2:
                seaweedfs.freeze()

    storage = FreezesAfterTwoPuts(bucket, "registry", client=make_s3_client(attempts=2, read_timeout=1))
    registry = Registry(storage, "demo")
    try:
        with pytest.raises(StorageError):
            registry.register(FILES, {})
    finally:
        seaweedfs.thaw()
    written = storage.list("demo/versions/")
    assert len(written) >= 2 and not any(k.endswith("MANIFEST.json") for k in written)  # half-written, really
    assert registry.versions() == []  # ...and is never listed


def test_s3_weights_source(seaweedfs, bucket: str, tmp_path: Path) -> None:
    import skimage.data
    from PIL import Image
    from safetensors.torch import save

    from headstart.library.models.backbones import create_pretrained
    from headstart.library.models.verify import imagenet_top5

    model = create_pretrained("tf_efficientnet_lite0", "package:efficientnet-lite0")
    blob = save({k: v.contiguous() for k, v in model.state_dict().items()})
    S3Storage(bucket).put("weights/lite0.safetensors", blob)
    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "cat.png")
    [top5] = imagenet_top5("tf_efficientnet_lite0", f"s3://{bucket}/weights/lite0.safetensors", [tmp_path / "cat.png"])
    assert top5[0][0] in range(281, 286)  # a cat
    # the weights came through S3 unchanged: the same answer, to the probability, as the package's own
    assert imagenet_top5("tf_efficientnet_lite0", "package:efficientnet-lite0", [tmp_path / "cat.png"]) == [top5]
